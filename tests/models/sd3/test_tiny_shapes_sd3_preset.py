"""`tiny-shapes-sd3`: the shipped SD3-family model of the shapes world loads offline and draws what it is asked."""

import os

import keras
import numpy as np
import pytest
from keras import ops

from studio.models import StableDiffusionBackbone, backbone_class, family_of
from studio.models import stable_diffusion_backbone
from studio.models.presets import SD3_PRESETS
from studio.models.sd3 import SD3Backbone

# As test_sd3_backbone.py: building keras-hub's backbone under JAX takes
# about a minute, so the JAX step leaves this module to `-m large`.
pytestmark = [pytest.mark.large] if keras.backend.backend() == "jax" else []

PRESET = "tiny-shapes-sd3"


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


def test_it_draws_the_prompted_shape(backbone, held_out_shape_reading):
    accuracy, pairs = held_out_shape_reading(backbone)
    assert accuracy >= 0.8, pairs


def test_shipped_weights_stay_small_and_reuse_tiny_shapes_text_encoder():
    packaged = SD3_PRESETS[PRESET]["packaged_weights"]
    assert packaged["text_encoders"] == "tiny-shapes"
    own = [stable_diffusion_backbone.packaged_weights_path(packaged[name], name)
           for name in ("mmdit", "vae")]
    assert sum(os.path.getsize(p) for p in own) < 5 * 2**20
