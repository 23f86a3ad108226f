"""Tests of CLIPEncoderLayer, the CLIP text transformer block."""

import math

import keras
import numpy as np
import pytest

from studio.models.clip_encoder_layer import ACTIVATIONS
from studio.models.clip_encoder_layer import CLIPEncoderLayer

skip_unless_tensorflow = pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="keras_cv runs on the TensorFlow backend only",
)
PARITY_TOLERANCE = 1e-5


def random_vectors(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def reference_activation(name, x):
    if name == "quick_gelu":
        return x / (1 + math.exp(-1.702 * x))
    if name == "gelu":
        return 0.5 * x * (1 + math.erf(x / math.sqrt(2)))
    inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
    return 0.5 * x * (1 + math.tanh(inner))


@pytest.mark.parametrize("name", ["quick_gelu", "gelu", "gelu_approximate"])
def test_activations_follow_their_definitions(name):
    x = np.linspace(-4, 4, 33).astype("float32")
    actual = keras.ops.convert_to_numpy(ACTIVATIONS[name](x))
    expected = [reference_activation(name, value) for value in x]
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_keeps_the_shape_and_weight_order_of_keras_cv():
    layer = CLIPEncoderLayer(32, 2, 128)
    outputs = layer(random_vectors((2, 7, 32)))
    assert tuple(outputs.shape) == (2, 7, 32)
    assert [tuple(w.shape) for w in layer.weights] == [
        (32,), (32,),  # attention layer norm
        (32, 32), (32,), (32, 32), (32,), (32, 32), (32,),  # q, k, v
        (32, 32), (32,),  # attention output
        (32,), (32,),  # MLP layer norm
        (32, 128), (128,), (128, 32), (32,),  # MLP
    ]  # fmt: skip


def test_config_round_trips():
    layer = CLIPEncoderLayer(32, 4, 64, "gelu", 1e-6, name="block")
    rebuilt = CLIPEncoderLayer.from_config(layer.get_config())
    assert rebuilt.get_config() == layer.get_config()


@pytest.mark.keras_cv
@skip_unless_tensorflow
@pytest.mark.parametrize("name", ["quick_gelu", "gelu_approximate"])
def test_matches_keras_cv_clip_encoder_layer(name):
    from keras_cv.src.models.stable_diffusion import text_encoder

    keras_cv_activation = {
        "quick_gelu": text_encoder.quick_gelu,
        "gelu_approximate": keras.ops.gelu,
    }[name]
    inputs = random_vectors((2, 9, 32))
    keras_cv_layer = text_encoder.CLIPEncoderLayer(
        32, 4, activation=keras_cv_activation
    )
    expected = keras.ops.convert_to_numpy(keras_cv_layer(inputs))
    layer = CLIPEncoderLayer(32, 4, 128, intermediate_activation=name)
    layer.build(inputs.shape)
    layer.set_weights(keras_cv_layer.get_weights())
    actual = keras.ops.convert_to_numpy(layer(inputs))
    assert np.max(np.abs(actual - expected)) <= PARITY_TOLERANCE * np.max(
        np.abs(expected)
    )
