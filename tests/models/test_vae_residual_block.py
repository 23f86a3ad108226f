"""Tests of VAEResidualBlock."""

import keras
import numpy as np
import pytest

from studio.models.vae_residual_block import VAEResidualBlock

skip_unless_tensorflow = pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="keras_cv runs on the TensorFlow backend only",
)
PARITY_TOLERANCE = 1e-5


def random_maps(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_projects_the_skip_connection_only_when_the_width_changes():
    same = VAEResidualBlock(16, norm_groups=8)
    same(random_maps((1, 4, 4, 16)))
    assert same.shortcut is None
    assert len(same.weights) == 8
    wider = VAEResidualBlock(32, norm_groups=8)
    outputs = wider(random_maps((1, 4, 4, 16)))
    assert tuple(outputs.shape) == (1, 4, 4, 32)
    assert tuple(wider.weights[-2].shape) == (1, 1, 16, 32)


def test_config_round_trips():
    layer = VAEResidualBlock(64, norm_groups=16, norm_epsilon=1e-6, name="res")
    rebuilt = VAEResidualBlock.from_config(layer.get_config())
    assert rebuilt.get_config() == layer.get_config()


@pytest.mark.keras_cv
@skip_unless_tensorflow
@pytest.mark.parametrize("input_channels", [32, 64])
def test_matches_keras_cv_resnet_block(input_channels):
    from keras_cv.src.models.stable_diffusion.resnet_block import ResnetBlock

    inputs = random_maps((1, 8, 8, input_channels))
    keras_cv_block = ResnetBlock(64)
    expected = keras.ops.convert_to_numpy(keras_cv_block(inputs))
    block = VAEResidualBlock(64, norm_groups=32)
    block.build(inputs.shape)
    assert [w.shape for w in block.weights] == [
        w.shape for w in keras_cv_block.weights
    ]
    block.set_weights(keras_cv_block.get_weights())
    actual = keras.ops.convert_to_numpy(block(inputs))
    assert np.max(np.abs(actual - expected)) <= PARITY_TOLERANCE * np.max(
        np.abs(expected)
    )
