"""DataParallelDevices: one device changes nothing; batches and missing devices are named.

Splitting devices needs a fresh interpreter: test_data_parallel_step.py and
test_data_parallel_commands.py do that.
"""

import json
import os
import subprocess
import sys

import keras
import pytest

from studio.trainers.distributed.data_parallel_devices import DataParallelDevices

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_one_device_changes_nothing():
    devices = DataParallelDevices().setup()
    assert not devices.is_data_parallel
    assert devices.device_names is None
    with devices.scope():
        assert keras.distribution.distribution() is None
    assert devices.jit_compile("auto") == "auto"
    assert devices.jit_compile(True) is True
    assert devices.split_batch(3, "--batch-size 3") == 3


def test_config_round_trips_through_json():
    devices = DataParallelDevices(4)
    config = json.loads(json.dumps(devices.get_config()))
    assert DataParallelDevices(**config).num_devices == 4


@pytest.mark.parametrize("num_devices", [0, -1, 1.5, True, "2"])
def test_bad_device_counts_are_named(num_devices):
    with pytest.raises(ValueError, match=r"--devices must be an integer >= 1. Received"):
        DataParallelDevices(num_devices)


def test_a_batch_must_split_evenly():
    assert DataParallelDevices(2).split_batch(4, "--batch-size 4") == 2
    with pytest.raises(ValueError, match=r"Received: --devices 2 and a batch of 3 \(--batch-size 3\)"):
        DataParallelDevices(2).split_batch(3, "--batch-size 3")


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TensorFlow's devices")
def test_more_devices_than_gpus_is_an_error(monkeypatch):
    import tensorflow as tf

    real = tf.config.list_physical_devices

    def one_gpu(device_type=None):
        if device_type == "GPU":
            return [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")]
        return real(device_type)

    monkeypatch.setattr(tf.config, "list_physical_devices", one_gpu)
    with pytest.raises(ValueError, match=r"Give --devices 1 or less.*Received: --devices 4; this machine has 1 GPU$"):
        DataParallelDevices(4).setup()


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="TensorFlow's devices")
def test_a_started_tensorflow_cannot_split_its_cpu_any_more():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU machine does not split its CPU")
    # Starts TensorFlow (if no test has yet), which fixes its devices.
    available = len(tf.config.list_logical_devices("CPU"))
    with pytest.raises(ValueError, match=r"new process.*Received: --devices \d+; this machine has"):
        DataParallelDevices(available + 1).setup()


def test_a_started_jax_cannot_split_its_cpu_any_more():
    code = (
        "import jax\n"
        "from studio.trainers.distributed.data_parallel_devices import DataParallelDevices\n"
        "jax.devices()\n"  # Starts JAX with one CPU device.
        "try:\n"
        "    DataParallelDevices(2).setup()\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    env.pop("XLA_FLAGS", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "XLA_FLAGS=--xla_force_host_platform_device_count=2" in result.stdout
    assert "Received: --devices 2; this machine has 1 CPU device and no accelerator" in result.stdout


def test_a_fresh_tensorflow_splits_its_cpu_and_refuses_gradient_accumulation():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU machine does not split its CPU")
    code = (
        "from studio.trainers.distributed.data_parallel_devices import DataParallelDevices\n"
        "devices = DataParallelDevices(2).setup()\n"
        "print(devices.device_names, devices.describe())\n"
        "print(devices.jit_compile(True))\n"
        "devices.check_gradient_accumulation(1)\n"
        "try:\n"
        "    devices.check_gradient_accumulation(2)\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("['/cpu:0', '/cpu:1'] 2 logical CPU devices")
    assert lines[1] == "False"
    assert lines[2].endswith("Received: --grad-accum 2 and --devices 2")
