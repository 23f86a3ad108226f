"""`studio train base`, shortened: the pretraining pipeline runs and is reproducible from its seed."""

import json
import os
import shutil

import numpy as np
import pytest

from studio.trainers import BaseModelSettings, pretrain_base_model

pytestmark = pytest.mark.tensorflow_only

SHORT = dict(pool_size=64, batch_size=8, vae_steps=3, steps=3, warmup_steps=1, save_every=2,
             log_every=1)


@pytest.fixture(scope="module", autouse=True)
def eager_steps(eager_compile):
    """Eager train steps: tracing the two phases' steps costs far more than 3 steps each.

    Reproducibility and resuming are what these tests check; `fit`'s compiled
    steps are the same Keras code as every other trainer's (their compiled
    steps are tested in test_textual_inversion_trainer.py).
    """
    from studio.trainers.base_model.base_model_trainer import BaseModelTrainer
    from studio.trainers.base_model.vae_trainer import VAETrainer

    with pytest.MonkeyPatch.context() as patch:
        eager_compile(patch, VAETrainer, BaseModelTrainer)
        yield


def pretrain(settings, out, resume=False):
    """`studio train base`'s library function, on the settings dict."""
    return pretrain_base_model(BaseModelSettings(**settings), out, resume=resume)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs with the same seed ("a", "b") and one with another ("c")."""
    root = tmp_path_factory.mktemp("base")
    folders = {name: pretrain(dict(SHORT, seed=seed), str(root / name))
               for name, seed in (("a", 0), ("b", 0), ("c", 1))}
    return root, folders


def _weights(folder):
    from studio.models import StableDiffusionBackbone

    backbone = StableDiffusionBackbone.from_preset(folder)
    return backbone, [w for n in backbone.components.values() for w in n.get_weights()]


@pytest.mark.large
def test_pretraining_is_reproducible_from_the_seed(runs):
    root, folders = runs
    backbone, weights_a = _weights(folders["a"])
    _, weights_b = _weights(folders["b"])
    _, weights_c = _weights(folders["c"])
    assert all(np.array_equal(a, b) for a, b in zip(weights_a, weights_b))
    assert not all(np.array_equal(a, c) for a, c in zip(weights_a, weights_c))
    with open(os.path.join(folders["a"], "backbone.json")) as file:
        assert json.load(file)["latent_scale"] == pytest.approx(backbone.latent_scale)
    for phase, steps in (("vae", 3), ("diffusion", 3)):
        with open(root / "a" / phase / "summary.json") as file:
            assert json.load(file)["steps"] == steps


@pytest.mark.large
def test_resume_skips_a_finished_phase_and_refuses_to_overwrite(runs, tmp_path):
    # A copy of the finished 3-step run "b", which the same settings wrote.
    out = str(tmp_path / "run")
    shutil.copytree(runs[0] / "b", out)
    with pytest.raises(ValueError, match="already holds a training run"):
        pretrain(dict(SHORT, steps=4), out)
    folder = pretrain(dict(SHORT, steps=4), out, resume=True)
    with open(os.path.join(out, "vae", "summary.json")) as file:
        assert json.load(file)["steps"] == 3
    with open(os.path.join(out, "diffusion", "summary.json")) as file:
        assert json.load(file)["steps"] == 4
    assert os.path.isfile(os.path.join(folder, "unet.weights.h5"))
