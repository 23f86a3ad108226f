"""Tests of VAEEncoder: tiny configs everywhere, KerasCV parity at full size."""

import json

import keras
import numpy as np
import pytest

from studio.models.vae_attention_block import VAEAttentionBlock
from studio.models.vae_encoder import VAEEncoder
from studio.models.vae_residual_block import VAEResidualBlock

TINY_CONFIG = {
    "block_channels": (32, 32),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_groups": 8,
}
SD_CONFIG = {
    "block_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_groups": 32,
}
# KerasCV's ImageEncoder returns the latent mean times this factor.
KERAS_CV_LATENT_SCALE = 0.18215
# Relative tolerance of the float32 comparisons with KerasCV.
PARITY_TOLERANCE = 1e-4

skip_unless_tensorflow = pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="keras_cv runs on the TensorFlow backend only",
)


def random_images(batch_size, height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (batch_size, height, width, 3)).astype("float32")


def test_returns_mean_and_log_variance_at_half_resolution_per_level():
    encoder = VAEEncoder(**TINY_CONFIG)
    moments = encoder(random_images(2, 64, 48))
    assert tuple(moments.shape) == (2, 32, 24, 8)
    assert keras.backend.standardize_dtype(moments.dtype) == "float32"
    assert encoder.downsampling_factor == 2


def test_sd_shaped_levels_downsample_by_eight():
    encoder = VAEEncoder(**{**TINY_CONFIG, "block_channels": (32, 32, 32, 32)})
    assert encoder.downsampling_factor == 8
    assert tuple(encoder(random_images(1, 64, 64)).shape) == (1, 8, 8, 8)


def test_latent_channels_set_the_moment_width():
    encoder = VAEEncoder(**{**TINY_CONFIG, "latent_channels": 3})
    assert tuple(encoder(random_images(1, 16, 16)).shape) == (1, 8, 8, 6)


def test_builds_layers_per_block_residual_blocks_per_level_and_mid_blocks():
    encoder = VAEEncoder(**{**TINY_CONFIG, "layers_per_block": 3})
    residual_blocks = [
        layer for layer in encoder.layers if isinstance(layer, VAEResidualBlock)
    ]
    attention_blocks = [
        layer for layer in encoder.layers if isinstance(layer, VAEAttentionBlock)
    ]
    assert len(residual_blocks) == 2 * 3 + 2
    assert len(attention_blocks) == 1


@pytest.mark.parametrize("shape", [(1, 60, 64, 3), (1, 64, 62, 3)])
def test_image_size_must_be_divisible_by_the_downsampling_factor(shape):
    encoder = VAEEncoder(**{**TINY_CONFIG, "block_channels": (32, 32, 32, 32)})
    with pytest.raises(ValueError, match="divisible by 8"):
        encoder(np.zeros(shape, "float32"))


def test_norm_groups_must_divide_every_level_width():
    with pytest.raises(ValueError, match="norm_groups"):
        VAEEncoder(**{**TINY_CONFIG, "block_channels": (32, 36)})


def test_block_channels_must_not_be_empty():
    with pytest.raises(ValueError, match="block_channels"):
        VAEEncoder(**{**TINY_CONFIG, "block_channels": ()})


def test_config_round_trips_through_json():
    encoder = VAEEncoder(**TINY_CONFIG, name="vae_encoder")
    config = json.loads(json.dumps(encoder.get_config()))
    assert config["block_channels"] == [32, 32]
    assert config["layers_per_block"] == 1
    assert config["norm_groups"] == 8
    rebuilt = VAEEncoder.from_config(config)
    assert rebuilt.get_config() == encoder.get_config()
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in encoder.weights]


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_half_and_returns_float32(policy):
    encoder = VAEEncoder(**TINY_CONFIG, dtype=policy)
    layers = [
        layer
        for layer in encoder._flatten_layers(include_self=False)
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    assert layers and all(layer.dtype_policy.name == policy for layer in layers)
    moments = encoder(random_images(1, 16, 16))
    assert keras.backend.standardize_dtype(moments.dtype) == "float32"
    assert encoder.get_config()["dtype"] == policy


# Full size (about 140 MB per model, twice): kept out of the default run.
@pytest.mark.large
@pytest.mark.keras_cv
@skip_unless_tensorflow
def test_sd_config_matches_keras_cv_image_encoder():
    from keras_cv.models.stable_diffusion import ImageEncoder

    keras_cv_encoder = ImageEncoder(download_weights=False)
    encoder = VAEEncoder(**SD_CONFIG)
    assert [tuple(w.shape) for w in encoder.weights] == [
        tuple(w.shape) for w in keras_cv_encoder.weights
    ]
    encoder.set_weights(keras_cv_encoder.get_weights())
    images = random_images(1, 64, 64)
    expected = keras.ops.convert_to_numpy(keras_cv_encoder(images))
    moments = keras.ops.convert_to_numpy(encoder(images))
    actual = moments[..., :4] * KERAS_CV_LATENT_SCALE
    assert actual.shape == expected.shape == (1, 8, 8, 4)
    assert np.max(np.abs(actual - expected)) <= PARITY_TOLERANCE * np.max(
        np.abs(expected)
    )
