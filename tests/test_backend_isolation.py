"""Model, sampler and tokenizer code runs without TensorFlow, and under JAX."""

import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Backend-agnostic test folders, re-run under JAX by this module.
PORTABLE_TESTS = ["tests/models", "tests/schedulers", "tests/tokenizers",
                  "tests/pipelines", "tests/images", "tests/prompts", "tests/cli",
                  # The trainers' steps: a few tests, since JAX spends about a
                  # minute compiling each trainer's step on 2 CPU cores.
                  "tests/trainers/test_textual_inversion_trainer.py::"
                  "test_training_changes_the_new_vectors_and_no_frozen_weight",
                  "tests/trainers/test_dreambooth_trainer.py::"
                  "test_lora_trains_only_lora_weights_and_keeps_every_base_weight",
                  "tests/trainers/test_dreambooth_trainer.py::test_full_mode_trains_the_unet_only",
                  "tests/trainers/test_dreambooth_trainer.py::"
                  "test_loss_is_instance_loss_plus_weighted_prior_loss"]


def _run(command, backend):
    env = dict(os.environ, KERAS_BACKEND=backend)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)


def test_models_import_without_tensorflow_under_jax():
    code = (
        "import sys, studio.models, studio.schedulers, studio.tokenizers, "
        "studio.pipelines\n"
        "bad = [m for m in ('tensorflow', 'keras_cv') if m in sys.modules]\n"
        "assert not bad, f'imported {bad}'"
    )
    result = _run([sys.executable, "-c", code], "jax")
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.skipif(
    keras.config.backend() == "jax", reason="this run is already under JAX"
)
def test_portable_tests_pass_under_jax():
    folders = [
        f for f in PORTABLE_TESTS if os.path.exists(os.path.join(ROOT, f.split("::")[0]))
    ]
    result = _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-m", "not large and not keras_cv and not tensorflow_only", *folders],
        "jax",
    )
    assert result.returncode == 0, (
        "The backend-agnostic tests failed under KERAS_BACKEND=jax:\n"
        + result.stdout[-6000:] + result.stderr[-2000:]
    )
    assert " passed" in result.stdout.splitlines()[-1]
