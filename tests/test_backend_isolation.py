"""Under JAX, model code imports no TensorFlow; the suite runs the backend it is asked for.

The backend-agnostic tests themselves run a second time under JAX as a
step of their own in `.ci/run` (`KERAS_BACKEND=jax python -m pytest ...`),
not from here.
"""

import os
import subprocess
import sys

import keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_models_import_without_tensorflow_under_jax():
    code = (
        "import sys, keras, studio.models, studio.schedulers, studio.tokenizers, "
        "studio.pipelines\n"
        "assert keras.config.backend() == 'jax', keras.config.backend()\n"
        "bad = [m for m in ('tensorflow', 'keras_cv') if m in sys.modules]\n"
        "assert not bad, f'imported {bad}'"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_suite_runs_under_the_backend_it_was_asked_for():
    # tests/conftest.py only sets a default: `KERAS_BACKEND=jax pytest` (the
    # JAX step of .ci/run) must really test JAX.
    assert keras.config.backend() == os.environ["KERAS_BACKEND"]
