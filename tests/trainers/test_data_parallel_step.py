"""One data-parallel step on 2 logical CPU devices equals one single-device step.

For both trainers and both backends, each case runs
`data_parallel_step.py` in a fresh interpreter (devices are fixed when a
backend starts): two SGD steps on the same global batches, once on one
device and once split across two, from the same tiny model. The trained
weights (textual-inversion vectors; DreamBooth's LoRA matrices) and the
step losses must agree to float32 round-off. JAX compiles each step in
about half a minute on 2 CPU cores, so its cases are large.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tests", "trainers", "data_parallel_step.py")
# float32 round-off of sums taken in another order; a gradient off by the
# replica count, or shared noise, moves the weights by ~0.1 (the change is ~0.1-0.2).
TOLERANCE = 1e-5


def _single_gpu():
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU")) == 1


# Two GPUs (or more) hold the two devices, a machine without GPUs splits its
# CPU; one GPU can do neither.
pytestmark = pytest.mark.skipif(_single_gpu(), reason="2 devices need 2 GPUs or none")


def run_step(method, backend, *options):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    if backend == "jax":
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    result = subprocess.run(
        [sys.executable, SCRIPT, method, *options],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "backend, options",
    [
        # Eager steps: quickest. The graph the commands trace is large.
        pytest.param("tensorflow", (), id="tensorflow-eager"),
        pytest.param("tensorflow", ("--graph",), marks=pytest.mark.large, id="tensorflow-graph"),
        pytest.param("jax", (), marks=pytest.mark.large, id="jax"),
    ],
)
@pytest.mark.parametrize("method", ["textual_inversion", "dreambooth"])
def test_data_parallel_step_equals_single_device_step(method, backend, options):
    result = run_step(method, backend, *options)
    assert len(result["devices"]) == result["variable_copies"] == 2
    assert result["initial_difference"] == 0.0
    assert result["weight_change"] > 0.01
    assert result["weight_difference"] < TOLERANCE, result
    assert result["loss_difference"] < TOLERANCE, result
