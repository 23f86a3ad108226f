"""`studio train base`, shortened: the pretraining pipeline runs and is reproducible from its seed."""

import json
import os

import numpy as np
import pytest

from studio.trainers import BaseModelSettings, pretrain_base_model

pytestmark = pytest.mark.tensorflow_only

SHORT = dict(pool_size=64, batch_size=8, vae_steps=3, steps=3, warmup_steps=1, save_every=2,
             log_every=1)


def pretrain(settings, out, resume=False):
    """`studio train base`'s library function, on the settings dict."""
    return pretrain_base_model(BaseModelSettings(**settings), out, resume=resume)


def _weights(folder):
    from studio.models import StableDiffusionBackbone

    backbone = StableDiffusionBackbone.from_preset(folder)
    return backbone, [w for n in backbone.components.values() for w in n.get_weights()]


@pytest.mark.large
def test_pretraining_is_reproducible_from_the_seed(tmp_path):
    first = pretrain(dict(SHORT), str(tmp_path / "a"))
    second = pretrain(dict(SHORT), str(tmp_path / "b"))
    other = pretrain(dict(SHORT, seed=1), str(tmp_path / "c"))
    backbone, weights_a = _weights(first)
    _, weights_b = _weights(second)
    _, weights_c = _weights(other)
    assert all(np.array_equal(a, b) for a, b in zip(weights_a, weights_b))
    assert not all(np.array_equal(a, c) for a, c in zip(weights_a, weights_c))
    with open(os.path.join(first, "backbone.json")) as file:
        assert json.load(file)["latent_scale"] == pytest.approx(backbone.latent_scale)
    for phase, steps in (("vae", 3), ("diffusion", 3)):
        with open(tmp_path / "a" / phase / "summary.json") as file:
            assert json.load(file)["steps"] == steps


@pytest.mark.large
def test_resume_skips_a_finished_phase_and_refuses_to_overwrite(tmp_path):
    out = str(tmp_path / "run")
    pretrain(dict(SHORT), out)
    with pytest.raises(ValueError, match="already holds a training run"):
        pretrain(dict(SHORT, steps=4), out)
    folder = pretrain(dict(SHORT, steps=4), out, resume=True)
    with open(os.path.join(out, "vae", "summary.json")) as file:
        assert json.load(file)["steps"] == 3
    with open(os.path.join(out, "diffusion", "summary.json")) as file:
        assert json.load(file)["steps"] == 4
    assert os.path.isfile(os.path.join(folder, "unet.weights.h5"))
