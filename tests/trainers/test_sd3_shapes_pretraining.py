"""`studio train base-sd3`, shortened: the SD3-family shapes model trains reproducibly from its seed."""

import os

import numpy as np
import pytest

from studio.cli.main import run_command as studio
from studio.trainers import SD3ShapesSettings, pretrain_sd3_shapes_model
from studio.trainers.settings.run_settings_files import read_run_settings

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.large]

SHORT = dict(pool_size=64, batch_size=4, vae_steps=2, decoder_steps=2, steps=2, warmup_steps=1,
             save_every=2, log_every=1)


@pytest.fixture(autouse=True)
def eager_steps(eager_compile, monkeypatch):
    """Eager train steps: tracing the steps costs far more than 2 steps."""
    from studio.trainers.base_model.sd3_base_model_trainer import SD3BaseModelTrainer
    from studio.trainers.base_model.sd3_vae_trainer import SD3VAETrainer

    eager_compile(monkeypatch, SD3BaseModelTrainer, SD3VAETrainer)



def _weights(backbone):
    return {name: network.get_weights() for name, network in backbone.components.items()}


def _equal(first, second):
    """Whether two lists of weight arrays are equal, array by array."""
    return all(np.array_equal(a, b) for a, b in zip(first, second))


def test_pretraining_is_reproducible_and_trains_the_vae_its_decoder_and_mmdit_only(tmp_path):
    from studio.trainers.base_model.sd3_shapes_pretraining import (
        LATENT_STATISTICS_FILE,
        build_start_model,
        load_sd3_shapes_model,
    )

    first = load_sd3_shapes_model(
        pretrain_sd3_shapes_model(SD3ShapesSettings(**SHORT), str(tmp_path / "a")))
    # The second through the command, with the same settings as options.
    options = [f"--{key.replace('_', '-')}={value}" for key, value in SHORT.items()]
    assert studio("train", "base-sd3", "--out", str(tmp_path / "b"), *options) == 0
    second = load_sd3_shapes_model(str(tmp_path / "b" / "model"))
    weights_a, weights_b = _weights(first), _weights(second)
    for name in weights_a:
        assert _equal(weights_a[name], weights_b[name]), name
    assert first.latent_shift == second.latent_shift and first.latent_scale > 0
    start = _weights(build_start_model(seed=0))
    for name in ("vae", "mmdit"):
        assert not _equal(start[name], weights_a[name]), name
    # CLIP-L and CLIP-G: tiny-shapes' encoder re-expressed, frozen.
    for name in ("clip_l", "clip_g"):
        assert _equal(start[name], weights_a[name]), name
    # The decoder phase trains the decoder on the first phase's VAE and leaves
    # its encoder, so the latents the MMDiT learned, as they were.
    after_vae = build_start_model(seed=0)
    after_vae.vae.load_weights(str(tmp_path / "a" / "vae" / "vae.weights.h5"))
    for part, changed in (("encoder", False), ("decoder", True)):
        same = _equal(getattr(after_vae.vae, part).get_weights(),
                      getattr(first.vae, part).get_weights())
        assert same != changed, part
    settings = read_run_settings(str(tmp_path / "a" / "diffusion"))
    assert isinstance(settings, SD3ShapesSettings) and settings.steps == 2
    assert os.path.isfile(tmp_path / "a" / "model" / LATENT_STATISTICS_FILE)
