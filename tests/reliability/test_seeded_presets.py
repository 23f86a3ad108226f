"""A seeded random preset is one model on every backend (issue #23, item 21)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("jax")

# Builds `tiny` under the backend of the environment and saves its weights.
BUILD_TINY = textwrap.dedent("""
    import sys
    import numpy as np
    from studio.models import StableDiffusionBackbone

    backbone = StableDiffusionBackbone.from_preset("tiny")
    arrays = {
        f"{name}/{index}": np.asarray(variable.numpy())
        for name, network in backbone.components.items()
        for index, variable in enumerate(network.weights)
    }
    np.savez(sys.argv[1], **arrays)
    print("tensorflow imported:", "tensorflow" in sys.modules)
""")


def _tiny_weights(backend, path):
    environment = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
                       JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-c", BUILD_TINY, str(path)], env=environment,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(path) as arrays:
        return dict(arrays), result.stdout


def _tiny_weights_here():
    """`tiny`'s weights built in this process (the backend of the test run)."""
    from studio.models import StableDiffusionBackbone

    backbone = StableDiffusionBackbone.from_preset("tiny")
    return {
        f"{name}/{index}": np.asarray(variable.numpy())
        for name, network in backbone.components.items()
        for index, variable in enumerate(network.weights)
    }


def test_tiny_is_the_same_model_under_jax_and_tensorflow(tmp_path):
    import keras

    # One backend here, the other in a fresh process (a second process for
    # the test run's own backend would cost its start for nothing).
    here = keras.config.backend()
    other = "jax" if here == "tensorflow" else "tensorflow"
    other_weights, other_output = _tiny_weights(other, tmp_path / f"{other}.npz")
    weights = _tiny_weights_here()
    if other == "jax":
        # studio.models under JAX stays free of TensorFlow.
        assert "tensorflow imported: False" in other_output
    assert sorted(other_weights) == sorted(weights)
    for key, value in other_weights.items():
        np.testing.assert_array_equal(value, weights[key], err_msg=key)
    # And it is a random model, not zeros.
    assert np.std(weights["text_encoder/0"]) > 0.01
