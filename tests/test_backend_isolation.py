"""Model, sampler and tokenizer code runs without TensorFlow, and under JAX."""

import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Backend-agnostic test folders, re-run under JAX by this module.
PORTABLE_TESTS = ["tests/models", "tests/schedulers", "tests/tokenizers",
                  "tests/pipelines", "tests/images", "tests/prompts", "tests/cli"]


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
    folders = [f for f in PORTABLE_TESTS if os.path.isdir(os.path.join(ROOT, f))]
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
