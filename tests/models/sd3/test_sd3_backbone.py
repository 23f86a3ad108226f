"""`SD3Backbone` (keras-hub's SD3 networks) through the studio's seam, on `tiny-sd3`."""

import keras
import numpy as np
import pytest
from keras import ops

from studio.models import TokenLookupView, backbone_class, family_of
from studio.models.sd3 import SD3Backbone

# Under JAX, building keras-hub's StableDiffusion3Backbone (its functional
# generate graph) takes about 70 s on 2 shared cores against about 7 s under
# TensorFlow (and keras_hub imports TensorFlow under every backend), so
# .ci/run's JAX step leaves this module to `-m large`; all of it passed under
# JAX when written (4.6 min).
pytestmark = [pytest.mark.large] if keras.backend.backend() == "jax" else []


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


@pytest.fixture(scope="module")
def backbone():
    from studio.interop import load_backbone

    # What every `--model` goes through: the family picks the class.
    backbone = load_backbone("tiny-sd3")
    assert isinstance(backbone, SD3Backbone) and backbone.name == "tiny-sd3"
    return backbone


def test_presets_name_the_sd3_family():
    for preset in ("tiny-sd3", "stable_diffusion_3.5_medium", "stable_diffusion_3_medium"):
        assert backbone_class(family_of(preset)) is SD3Backbone
    assert family_of("tiny") == "stable_diffusion"


def test_unknown_sd3_preset_is_one_clear_error():
    with pytest.raises(ValueError, match=r"Expected one of .*tiny-sd3.*Received: preset='sd3-xl'"):
        SD3Backbone.from_preset("sd3-xl")
    with pytest.raises(ValueError, match="SD3 presets take no `weights`"):
        SD3Backbone.from_preset("stable_diffusion_3.5_medium", weights="/tmp/w")


def test_encode_text_is_keras_hubs_positive_conditioning(backbone):
    ids = backbone.tokenizer(["a red circle", ""])
    conditioning = backbone.encode_text(ids)
    assert sorted(conditioning) == ["context", "pooled_projection"]
    ids = ops.convert_to_tensor(ids, "int32")
    context, _, pooled, _ = backbone.hub_backbone.encode_text_step(
        {"clip_l": ids, "clip_g": ids}, {"clip_l": ids, "clip_g": ids}
    )
    np.testing.assert_allclose(numpy(conditioning["context"]), numpy(context), atol=1e-6)
    np.testing.assert_allclose(numpy(conditioning["pooled_projection"]), numpy(pooled), atol=1e-6)
    # CLIP-L and CLIP-G side by side, padded to T5's 4096; T5's tokens are zeros.
    length = ids.shape[1]
    assert conditioning["context"].shape == (2, 2 * length, 4096)
    assert conditioning["pooled_projection"].shape == (2, 32 + 48)
    assert not np.any(numpy(conditioning["context"])[:, length:])
    assert np.any(numpy(conditioning["context"])[:, :length, : 32 + 48])


def test_token_lookup_view_reads_placeholders_in_both_clip_encoders(backbone):
    from studio.embeddings.placeholder_embedding import PlaceholderEmbedding
    from studio.tokenizers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_config(backbone.tokenizer.get_config())
    first_new_id = tokenizer.vocabulary_size
    word_ids = tokenizer.tokenize_words("red")  # Byte-level: one id per letter.
    tokenizer.add_placeholder_tokens("<sd3>", len(word_ids))
    lookup = {
        name: PlaceholderEmbedding(
            table, first_new_id, numpy(table.embeddings)[word_ids]
        )
        for name, table in backbone.token_embeddings.items()
    }
    view = backbone.with_token_lookup(tokenizer, lookup)
    assert isinstance(view, TokenLookupView)
    assert "<sd3>" not in backbone.tokenizer.placeholder_tokens

    with_placeholder = view.encode_text(tokenizer(["a <sd3> circle"]))
    with_word = backbone.encode_text(backbone.tokenizer(["a red circle"]))
    for key in ("context", "pooled_projection"):
        np.testing.assert_allclose(numpy(with_placeholder[key]), numpy(with_word[key]), atol=1e-5)
    # Other vectors for the placeholder change both encoders' conditioning.
    for name, table in backbone.token_embeddings.items():
        lookup[name].new_vectors.assign(numpy(table.embeddings)[[70] * len(word_ids)])
    moved = view.encode_text(tokenizer(["a <sd3> circle"]))
    assert not np.allclose(numpy(moved["pooled_projection"]), numpy(with_word["pooled_projection"]))
    with pytest.raises(ValueError, match="dict by text encoder"):
        backbone.encode_text(tokenizer(["a <sd3>"]), token_lookup=lookup["clip_l"])


def test_latents_use_the_vaes_shift_and_scale(backbone):
    pixels = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    moments = backbone.encode_moments(pixels)
    latents = backbone.sample_latents(moments)  # The mean.
    assert latents.shape == (2,) + backbone.latent_shape(64, 64) == (2, 8, 8, 16)
    mean = numpy(moments)[..., :16]
    np.testing.assert_allclose(numpy(latents), (mean - 0.0609) * 1.5305, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        numpy(latents), numpy(backbone.hub_backbone.image_rescaling(mean)), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        numpy(backbone.decode_latents(latents)),
        numpy(backbone.hub_backbone.decode_step(latents)),
        atol=1e-5,
    )


def test_denoise_is_the_mmdit_and_objective_is_flow_matching(backbone):
    from studio.trainers.objectives import FlowMatchingObjective, objective_for

    rng = np.random.default_rng(1)
    latents = ops.convert_to_tensor(rng.normal(size=(2, 8, 8, 16)).astype("float32"))
    conditioning = backbone.encode_text(backbone.tokenizer(["a cat", "a dog"]))
    timesteps = np.float32([250.0, 750.0])
    velocity = backbone.denoise(latents, timesteps, conditioning)
    expected = backbone.mmdit({
        "latent": latents, "context": conditioning["context"],
        "pooled_projection": conditioning["pooled_projection"],
        "timestep": ops.convert_to_tensor(timesteps[:, None]),
    })  # fmt: skip
    np.testing.assert_allclose(numpy(velocity), numpy(expected), atol=1e-6)
    later = backbone.denoise(latents, np.float32([750.0, 250.0]), conditioning)
    assert not np.allclose(numpy(later), numpy(velocity))

    objective = objective_for(backbone)
    assert isinstance(objective, FlowMatchingObjective)
    assert (objective.shift, objective.latent_scale, objective.latent_shift) == (3.0, 1.5305, 0.0609)
