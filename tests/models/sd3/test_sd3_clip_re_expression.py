"""`re_express_clip_in_sd3`: tiny-shapes' text encoder as keras-hub's SD3 CLIP-L and CLIP-G."""

import keras
import numpy as np
import pytest
from keras import ops

from studio.models import StableDiffusionBackbone
from studio.models.presets import TINY_SHAPES_SD3_SPEC
from studio.models.sd3 import SD3Backbone
from studio.models.sd3.sd3_clip_re_expression import re_express_clip_in_sd3

# As test_sd3_backbone.py: building keras-hub's backbone under JAX takes
# about a minute, so the JAX step leaves this module to `-m large`.
pytestmark = [pytest.mark.large] if keras.backend.backend() == "jax" else []


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


@pytest.fixture(scope="module")
def models():
    source = StableDiffusionBackbone.from_preset("tiny-shapes").text_encoder
    backbone = SD3Backbone.from_spec(TINY_SHAPES_SD3_SPEC, name="tiny-shapes-sd3",
                                     load_weights=False)
    re_express_clip_in_sd3(source, backbone.hub_backbone)
    return source, backbone


def test_the_sd3_encoders_compute_tiny_shapes_text_encoder(models):
    source, backbone = models
    ids = np.asarray(backbone.tokenizer(["a red circle on a blue background", "a shape", ""]))
    expected = numpy(source(ids))
    for name in ("clip_l", "clip_g"):
        clip = getattr(backbone, name)
        outputs = clip({"token_ids": ids})
        sequence = numpy(outputs["sequence_output"])
        # The extra last layer is the identity: the penultimate states SD3
        # reads are the final ones before the final norm.
        np.testing.assert_allclose(numpy(clip.layer_norm(outputs["intermediate_output"])),
                                   sequence, atol=1e-5)
        if name == "clip_l":
            # Quick GELU, as tiny-shapes'; keras-hub's final norm has epsilon
            # 1e-6 against the studio's 1e-5.
            np.testing.assert_allclose(sequence, expected, atol=1e-3)
        else:
            # CLIP-G's exact GELU moves the states a little, not far.
            assert 0 < np.abs(sequence - expected).max() < 0.5
        kernel = numpy(getattr(backbone.hub_backbone, f"{name}_projection").dense.kernel)
        np.testing.assert_array_equal(kernel, np.eye(64))


def test_the_worlds_prompts_fit_and_condition_the_mmdit(models):
    _, backbone = models
    # A long prompt of the world fits the 16 tokens, end token included
    # (tiny-sd3's byte-level tokenizer, one token a byte, would cut it).
    ids = backbone.tokenizer(["a purple triangle on a black background"])
    assert int(np.asarray(ids)[0, -1]) == backbone.tokenizer.end_token_id
    conditioning = backbone.encode_text(ids)
    # CLIP-L and CLIP-G side by side, padded to T5's width; 16 zero tokens for T5.
    assert conditioning["context"].shape == (1, 32, 4096)
    assert conditioning["pooled_projection"].shape == (1, 128)
    assert backbone.latent_shape(32, 32) == (8, 8, 16)
    latents = np.zeros((1, 8, 8, 16), "float32")
    assert backbone.denoise(latents, [500.0], conditioning).shape == (1, 8, 8, 16)


def test_encoders_of_other_sizes_are_refused(models):
    source, _ = models
    spec = dict(TINY_SHAPES_SD3_SPEC, clip_l=dict(TINY_SHAPES_SD3_SPEC["clip_l"], num_layers=2))
    other = SD3Backbone.from_spec(spec, load_weights=False)
    with pytest.raises(ValueError, match="one layer more"):
        re_express_clip_in_sd3(source, other.hub_backbone)
