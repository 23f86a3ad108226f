"""`tiny-shapes-xl`: the shipped SDXL-family model of the shapes world loads offline and draws what it is asked."""

import os

import numpy as np
import pytest

from studio.models import backbone_class, family_of, stable_diffusion_backbone
from studio.models.presets import BACKBONE_PRESETS
from studio.models.sdxl import SDXLBackbone



@pytest.fixture(scope="module")
def backbone():
    return SDXLBackbone.from_preset("tiny-shapes-xl")


def test_it_is_an_sdxl_model_with_both_encoders_and_the_added_conditioning(backbone):
    # What `--model tiny-shapes-xl` builds (`studio.interop.load_backbone`).
    assert backbone_class(family_of("tiny-shapes-xl")) is SDXLBackbone
    conditioning = backbone.encode_text(backbone.tokenizer(["a red circle", "a shape"]))
    assert conditioning["context"].shape == (2, 16, 128)
    assert conditioning["text_embeds"].shape == (2, 64)
    np.testing.assert_array_equal(conditioning["time_ids"][0], [32, 32, 0, 0, 32, 32])
    # Adapted, not the re-expressed start: both encoders and the added
    # conditioning have moved away from it (which is the same for both).
    first, second = backbone.text_encoder.get_weights(), backbone.text_encoder_2.get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))
    added = backbone.unet.get_layer("added_conditioning").dense_out.kernel
    assert np.abs(np.asarray(added.numpy())).max() > 0


def test_it_draws_the_prompted_shape(backbone, held_out_shape_reading):
    accuracy, pairs = held_out_shape_reading(backbone)
    assert accuracy >= 0.8, pairs


def test_shipped_weights_stay_small_and_share_tiny_shapes_vae():
    packaged = BACKBONE_PRESETS["tiny-shapes-xl"]["packaged_weights"]
    assert packaged["vae_encoder"] == BACKBONE_PRESETS["tiny-shapes"]["packaged_weights"]
    own = [stable_diffusion_backbone.packaged_weights_path(prefix, name)
           for name, prefix in packaged.items() if prefix == "tiny_shapes_xl"]
    assert len(own) == 3
    assert sum(os.path.getsize(p) for p in own) < 8 * 2**20
    # Everything in the package, the classifier and the three models, under 20 MiB.
    folder = os.path.dirname(own[0])
    total = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    assert total < 20 * 2**20
