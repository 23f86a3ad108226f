"""`tiny-shapes-sd3`: the shipped SD3-family model of the shapes world loads offline and draws what it is asked."""

import os

import keras
import numpy as np
import pytest
from keras import ops

from studio.datasets.shapes_world import ShapesWorld
from studio.models import StableDiffusionBackbone, backbone_class, family_of
from studio.models import stable_diffusion_backbone
from studio.models.presets import SD3_PRESETS
from studio.models.sd3 import SD3Backbone
from studio.pipelines import TextToImagePipeline

# As test_sd3_backbone.py: building keras-hub's backbone under JAX takes
# about a minute, so the JAX step leaves this module to `-m large`.
pytestmark = [pytest.mark.large] if keras.backend.backend() == "jax" else []

PRESET = "tiny-shapes-sd3"
# Named shapes on combinations held out of the world's training data:
# what the classifier must read in the images.
PROMPTS = {
    f"a {colour} {shape} on a {background} background": shape
    for shape, colour, background in [
        ("circle", "red", "black"), ("circle", "blue", "gray"),
        ("square", "yellow", "white"), ("square", "purple", "gray"),
        ("triangle", "red", "white"), ("triangle", "purple", "black"),
    ]
}
IMAGES_PER_PROMPT = 2
STEPS = 20
GUIDANCE = 4.0


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


@pytest.fixture(scope="module")
def backbone():
    from studio.interop import load_backbone

    return load_backbone(PRESET)


def test_it_is_an_sd3_model_whose_clip_encoders_hold_the_worlds_prompts(backbone):
    assert backbone_class(family_of(PRESET)) is SD3Backbone and backbone.image_size == 32
    assert backbone.latent_shape(32, 32) == (8, 8, 16)
    # A long prompt of the world fits the 16 tokens, end token included
    # (tiny-sd3's byte-level tokenizer, one token a byte, would cut it).
    ids = backbone.tokenizer(["a purple triangle on a black background"])
    assert int(np.asarray(ids)[0, -1]) == backbone.tokenizer.end_token_id
    conditioning = backbone.encode_text(ids)
    # CLIP-L and CLIP-G side by side, padded to T5's width; 16 zero tokens for T5.
    assert conditioning["context"].shape == (1, 32, 4096)
    assert conditioning["pooled_projection"].shape == (1, 128)


def test_its_clip_encoders_are_tiny_shapes_text_encoder_re_expressed(backbone):
    source = StableDiffusionBackbone.from_preset("tiny-shapes").text_encoder
    ids = np.asarray(backbone.tokenizer(["a red circle on a blue background", "a shape", ""]))
    expected = numpy(source(ids))
    for name in ("clip_l", "clip_g"):
        clip = getattr(backbone, name)
        outputs = clip({"token_ids": ids})
        # The extra last layer is the identity: the final states are the
        # source's (keras-hub's final norm: epsilon 1e-6 against 1e-5) ...
        sequence = numpy(outputs["sequence_output"])
        # ... and the penultimate states SD3 reads are them before the norm.
        np.testing.assert_allclose(numpy(clip.layer_norm(outputs["intermediate_output"])),
                                   sequence, atol=1e-6)
        if name == "clip_l":  # quick GELU, as tiny-shapes'; CLIP-G's GELU differs a little.
            np.testing.assert_allclose(sequence, expected, atol=1e-4)
        else:
            assert np.abs(sequence - expected).max() < 0.1
        projection = numpy(getattr(backbone.hub_backbone, f"{name}_projection").dense.kernel)
        np.testing.assert_array_equal(projection, np.eye(64))


def test_it_draws_the_prompted_shape(backbone, read_shapes):
    assert all(ShapesWorld.is_held_out(shape, prompt.split()[1], prompt.split()[-2])
               for prompt, shape in PROMPTS.items())
    pipeline = TextToImagePipeline(backbone)
    result = pipeline(list(PROMPTS), num_images_per_prompt=IMAGES_PER_PROMPT, num_steps=STEPS,
                      guidance_scale=GUIDANCE, seed=0)
    asked = [shape for shape in PROMPTS.values() for _ in range(IMAGES_PER_PROMPT)]
    seen = [shape for _, shape, _ in read_shapes(result.images)]
    accuracy = np.mean([a == s for a, s in zip(asked, seen)])
    assert accuracy >= 0.8, list(zip(asked, seen))


def test_shipped_weights_stay_small_and_reuse_tiny_shapes_text_encoder():
    packaged = SD3_PRESETS[PRESET]["packaged_weights"]
    assert packaged["text_encoders"] == "tiny-shapes"
    own = [stable_diffusion_backbone.packaged_weights_path(packaged[name], name)
           for name in ("mmdit", "vae")]
    assert sum(os.path.getsize(p) for p in own) < 5 * 2**20
