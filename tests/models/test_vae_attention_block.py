"""Tests of VAEAttentionBlock."""

import keras
import numpy as np
import pytest

from studio.models.vae_attention_block import VAEAttentionBlock

skip_unless_tensorflow = pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="keras_cv runs on the TensorFlow backend only",
)
PARITY_TOLERANCE = 1e-5


def random_maps(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_keeps_the_shape_and_mixes_information_across_pixels():
    layer = VAEAttentionBlock(norm_groups=8)
    inputs = random_maps((2, 4, 6, 16))
    outputs = keras.ops.convert_to_numpy(layer(inputs))
    assert outputs.shape == inputs.shape
    # Changing one pixel changes the output at every other pixel.
    changed = inputs.copy()
    changed[0, 0, 0] += 1.0
    edited = keras.ops.convert_to_numpy(layer(changed))
    assert np.all(np.abs(edited[0] - outputs[0]).max(axis=-1) > 0)
    np.testing.assert_allclose(edited[1], outputs[1], atol=1e-6)


def test_config_round_trips():
    layer = VAEAttentionBlock(norm_groups=16, norm_epsilon=1e-6, name="attn")
    rebuilt = VAEAttentionBlock.from_config(layer.get_config())
    assert rebuilt.get_config() == layer.get_config()


@pytest.mark.keras_cv
@skip_unless_tensorflow
def test_matches_keras_cv_attention_block():
    from keras_cv.src.models.stable_diffusion.attention_block import (
        AttentionBlock,
    )

    inputs = random_maps((2, 4, 6, 64))
    keras_cv_block = AttentionBlock(64)
    expected = keras.ops.convert_to_numpy(keras_cv_block(inputs))
    block = VAEAttentionBlock(norm_groups=32)
    block.build(inputs.shape)
    assert [w.shape for w in block.weights] == [
        w.shape for w in keras_cv_block.weights
    ]
    block.set_weights(keras_cv_block.get_weights())
    actual = keras.ops.convert_to_numpy(block(inputs))
    assert np.max(np.abs(actual - expected)) <= PARITY_TOLERANCE * np.max(
        np.abs(expected)
    )
