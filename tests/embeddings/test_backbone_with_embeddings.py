"""Loaded embeddings change their token's images only, and leave the shared backbone as it was."""

import numpy as np
import pytest

from studio.embeddings.backbone_with_embeddings import backbone_with_embeddings
from studio.embeddings import TextualInversionEmbedding

STEPS = 2


@pytest.fixture(scope="module")
def pipeline():
    from studio.models import StableDiffusionBackbone
    from studio.pipelines import TextToImagePipeline

    return TextToImagePipeline(StableDiffusionBackbone.from_preset("tiny"), jit_compile=False)


def generate(pipeline, backbone, prompt):
    import copy

    view = copy.copy(pipeline)
    view.backbone = backbone
    return view(prompt, num_steps=STEPS, seed=3).images[0].astype(int)


def test_embedding_token_changes_images_and_backbone_stays_untouched(pipeline):
    backbone = pipeline.backbone
    vocabulary_size = backbone.tokenizer.vocabulary_size
    vectors = np.random.default_rng(0).normal(size=(2, 32)).astype("float32") * 3
    view = backbone_with_embeddings(backbone, [TextualInversionEmbedding({"<thing>": vectors})])

    assert backbone.tokenizer.vocabulary_size == vocabulary_size
    assert "<thing>" not in backbone.tokenizer.placeholder_tokens
    assert view.tokenizer.placeholder_tokens["<thing>"] == [vocabulary_size, vocabulary_size + 1]
    plain = "a photo of a cat"
    assert np.array_equal(generate(pipeline, view, plain), generate(pipeline, backbone, plain))
    with_token = generate(pipeline, view, "a photo of <thing>")
    assert np.abs(with_token - generate(pipeline, backbone, "a photo of thing")).max() > 0


def test_embeddings_that_do_not_fit_are_refused(pipeline):
    backbone = pipeline.backbone
    wide = TextualInversionEmbedding({"<wide>": np.zeros((1, 768), "float32")})
    with pytest.raises(ValueError, match="768 .* wide but the text encoder's are 32"):
        backbone_with_embeddings(backbone, [wide])
    twice = [TextualInversionEmbedding({"<same>": np.ones((1, 32), "float32")})] * 2
    with pytest.raises(ValueError, match="Two embeddings use the placeholder '<same>'"):
        backbone_with_embeddings(backbone, twice)


def test_several_embeddings_register_their_tokens_in_order(pipeline):
    backbone = pipeline.backbone
    first = TextualInversionEmbedding({"<a>": np.ones((2, 32), "float32")})
    second = TextualInversionEmbedding({"<b>": np.full((1, 32), 2.0, "float32")})
    view = backbone_with_embeddings(backbone, [first, second])
    start = backbone.tokenizer.vocabulary_size
    assert view.tokenizer.placeholder_tokens["<a>"] == [start, start + 1]
    assert view.tokenizer.placeholder_tokens["<b>"] == [start + 2]


def test_other_base_weights_are_a_warning_not_an_error(pipeline, monkeypatch):
    import importlib

    # The package exports the function under the module's name.
    module = importlib.import_module("studio.embeddings.backbone_with_embeddings")

    monkeypatch.setattr(module, "published_text_encoder_hash", lambda preset: "b" * 64)
    trained_elsewhere = TextualInversionEmbedding(
        {"<elsewhere>": np.ones((1, 32), "float32")}, base_model="sd-v2",
        base_model_hash="a" * 64,
    )
    with pytest.warns(UserWarning, match=r"trained on other text-encoder weights \(sd-v2\)"):
        view = backbone_with_embeddings(pipeline.backbone, [trained_elsewhere])
    assert "<elsewhere>" in view.tokenizer.placeholder_tokens
