"""`studio train base-xl`, shortened: tiny-shapes re-expressed in SDXL and adapted, reproducibly from its seed."""

import os

import numpy as np
import pytest

from studio.trainers import SDXLShapesSettings, pretrain_sdxl_shapes_model
from studio.trainers.settings.run_settings_files import read_run_settings

pytestmark = pytest.mark.tensorflow_only

SHORT = dict(pool_size=64, batch_size=4, steps=2, warmup_steps=1, save_every=2, log_every=1)


def _weights(folder):
    from studio.models.sdxl import SDXLBackbone

    backbone = SDXLBackbone.from_preset(folder)
    return backbone, {name: network.get_weights() for name, network in backbone.components.items()}


@pytest.fixture(autouse=True)
def eager_steps(eager_compile, monkeypatch):
    """Eager train steps, as in test_base_command.py: tracing SD-XL's step costs far more than 2 steps."""
    from studio.trainers.base_model.base_model_trainer import BaseModelTrainer

    eager_compile(monkeypatch, BaseModelTrainer)


@pytest.mark.large
def test_adaptation_is_reproducible_and_trains_both_encoders_and_the_unet(tmp_path):
    from studio.trainers.base_model.sdxl_shapes_pretraining import build_re_expressed_model

    first = pretrain_sdxl_shapes_model(SDXLShapesSettings(**SHORT), str(tmp_path / "a"))
    second = pretrain_sdxl_shapes_model(SDXLShapesSettings(**SHORT), str(tmp_path / "b"))
    backbone, weights_a = _weights(first)
    _, weights_b = _weights(second)
    assert backbone.family == "sdxl" and backbone.image_size == 32
    for name in weights_a:
        assert all(np.array_equal(a, b) for a, b in zip(weights_a[name], weights_b[name])), name
    start = build_re_expressed_model(seed=0)
    for name in ("text_encoder", "text_encoder_2", "unet"):
        before = getattr(start, name).get_weights()
        assert not all(np.array_equal(a, b) for a, b in zip(before, weights_a[name])), name
    # tiny-shapes' VAE, frozen.
    for name in ("vae_encoder", "vae_decoder"):
        before = getattr(start, name).get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(before, weights_a[name])), name
    settings = read_run_settings(str(tmp_path / "a" / "diffusion"))
    assert isinstance(settings, SDXLShapesSettings) and settings.steps == 2
    assert os.path.isfile(tmp_path / "a" / "diffusion" / "text_encoder_2.weights.h5")
