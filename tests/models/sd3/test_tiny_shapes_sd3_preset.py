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


def test_it_loads_as_an_sd3_model_with_tiny_shapes_text_encoder_as_clip_l_and_g(backbone):
    """The preset builds the re-expressed encoders from tiny-shapes' shipped file
    (what re-expression computes: `test_sd3_clip_re_expression.py`)."""
    assert backbone_class(family_of(PRESET)) is SD3Backbone and backbone.image_size == 32
    assert backbone.latent_shape(32, 32) == (8, 8, 16)
    assert (backbone.latent_shift, backbone.latent_scale) == (
        SD3_PRESETS[PRESET]["vae"]["shift"], SD3_PRESETS[PRESET]["vae"]["scale"])
    source = StableDiffusionBackbone.from_preset("tiny-shapes").text_encoder
    ids = np.asarray(backbone.tokenizer(["a red circle on a blue background", "a shape", ""]))
    sequence = numpy(backbone.clip_l({"token_ids": ids})["sequence_output"])
    np.testing.assert_allclose(sequence, numpy(source(ids)), atol=1e-3)


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
