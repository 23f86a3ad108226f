import os

import numpy as np
import pytest

from studio.errors import WeightsNotFoundError
from studio.models import StableDiffusionBackbone
from studio.models import stable_diffusion_backbone
from studio.models.presets import BACKBONE_PRESETS


def test_tiny_shapes_loads_offline_with_its_shipped_weights():
    backbone = StableDiffusionBackbone.from_preset("tiny-shapes")
    random = StableDiffusionBackbone.from_preset("tiny-shapes", load_weights=False)
    assert backbone.image_size == 32
    # The world's tokenizer: start, one token per word, end.
    assert len(backbone.tokenizer.encode("a small red circle")) == 6
    assert not np.array_equal(backbone.unet.get_weights()[0], random.unet.get_weights()[0])


def test_shipped_weights_stay_small():
    prefix = BACKBONE_PRESETS["tiny-shapes"]["packaged_weights"]
    paths = [stable_diffusion_backbone.packaged_weights_path(prefix, name)
             for name in ("text_encoder", "unet", "vae_encoder", "vae_decoder")]
    # The whole package's weights, classifier included, must stay under 20 MB.
    assert sum(os.path.getsize(p) for p in paths) < 16 * 2**20


def test_missing_packaged_weights_name_the_files(monkeypatch, tmp_path):
    monkeypatch.setattr(
        stable_diffusion_backbone, "packaged_weights_path",
        lambda prefix, name: str(tmp_path / f"{prefix}_{name}.weights.h5"))
    with pytest.raises(WeightsNotFoundError, match="tiny_shapes_unet.weights.h5"):
        StableDiffusionBackbone.from_preset("tiny-shapes")
