"""Tests of VAEDecoder: tiny configs everywhere, KerasCV parity at full size."""

import json

import keras
import numpy as np
import pytest

from studio.models.vae_attention_block import VAEAttentionBlock
from studio.models.vae_decoder import VAEDecoder
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
# KerasCV's Decoder divides its input by this factor first.
KERAS_CV_LATENT_SCALE = 0.18215
# Relative tolerance of the float32 comparisons with KerasCV.
PARITY_TOLERANCE = 1e-4

skip_unless_tensorflow = pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="keras_cv runs on the TensorFlow backend only",
)


def random_latents(batch_size, height, width, channels=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch_size, height, width, channels)).astype("float32")


def test_returns_rgb_images_at_double_resolution_per_level():
    decoder = VAEDecoder(**TINY_CONFIG)
    images = decoder(random_latents(2, 8, 6))
    assert tuple(images.shape) == (2, 16, 12, 3)
    assert keras.backend.standardize_dtype(images.dtype) == "float32"
    assert decoder.upsampling_factor == 2


def test_sd_shaped_levels_upsample_by_eight():
    decoder = VAEDecoder(**{**TINY_CONFIG, "block_channels": (32, 32, 32, 32)})
    assert decoder.upsampling_factor == 8
    assert tuple(decoder(random_latents(1, 8, 8)).shape) == (1, 64, 64, 3)


def test_latent_channels_set_the_input_width():
    decoder = VAEDecoder(**{**TINY_CONFIG, "latent_channels": 3})
    assert tuple(decoder(random_latents(1, 4, 4, channels=3)).shape) == (1, 8, 8, 3)


def test_builds_one_more_residual_block_per_level_than_the_encoder():
    decoder = VAEDecoder(**{**TINY_CONFIG, "layers_per_block": 3})
    residual_blocks = [
        layer for layer in decoder.layers if isinstance(layer, VAEResidualBlock)
    ]
    attention_blocks = [
        layer for layer in decoder.layers if isinstance(layer, VAEAttentionBlock)
    ]
    assert len(residual_blocks) == 2 * (3 + 1) + 2
    assert len(attention_blocks) == 1


def test_norm_groups_must_divide_every_level_width():
    with pytest.raises(ValueError, match="norm_groups"):
        VAEDecoder(**{**TINY_CONFIG, "norm_groups": 5})


def test_config_round_trips_through_json():
    decoder = VAEDecoder(**TINY_CONFIG, name="vae_decoder")
    config = json.loads(json.dumps(decoder.get_config()))
    assert config["block_channels"] == [32, 32]
    assert config["layers_per_block"] == 1
    assert config["latent_channels"] == 4
    rebuilt = VAEDecoder.from_config(config)
    assert rebuilt.get_config() == decoder.get_config()
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in decoder.weights]


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_half_and_returns_float32(policy):
    decoder = VAEDecoder(**TINY_CONFIG, dtype=policy)
    layers = [
        layer
        for layer in decoder._flatten_layers(include_self=False)
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    assert layers and all(layer.dtype_policy.name == policy for layer in layers)
    images = decoder(random_latents(1, 4, 4))
    assert keras.backend.standardize_dtype(images.dtype) == "float32"
    assert decoder.get_config()["dtype"] == policy


# Full size (about 140 MB per model, twice): kept out of the default run.
@pytest.mark.large
@pytest.mark.keras_cv
@skip_unless_tensorflow
def test_sd_config_matches_keras_cv_decoder():
    from keras_cv.models.stable_diffusion import Decoder

    keras_cv_decoder = Decoder(64, 64, download_weights=False)
    decoder = VAEDecoder(**SD_CONFIG)
    assert [tuple(w.shape) for w in decoder.weights] == [
        tuple(w.shape) for w in keras_cv_decoder.weights
    ]
    decoder.set_weights(keras_cv_decoder.get_weights())
    latents = random_latents(1, 8, 8)
    expected = keras.ops.convert_to_numpy(keras_cv_decoder(latents))
    actual = keras.ops.convert_to_numpy(decoder(latents / KERAS_CV_LATENT_SCALE))
    assert actual.shape == expected.shape == (1, 64, 64, 3)
    assert np.max(np.abs(actual - expected)) <= PARITY_TOLERANCE * np.max(
        np.abs(expected)
    )


def test_weight_files_written_with_keras_convolutions_still_load(monkeypatch, tmp_path):
    # Keras keys a functional model's layers by class name in weight files;
    # the decoder's convolutions were `keras.layers.Conv2D` when the shipped
    # tiny-shapes and users' presets were saved.
    import studio.models.vae_decoder as module

    arguments = dict(block_channels=(8, 16), layers_per_block=1, norm_groups=4)
    latents = random_latents(1, 4, 4)
    with monkeypatch.context() as patch:
        patch.setattr(module, "Conv2D", keras.layers.Conv2D)
        old = VAEDecoder(**arguments)
        old(latents)
        rng = np.random.default_rng(5)
        old.set_weights([rng.standard_normal(w.shape).astype("float32") for w in old.get_weights()])
        path = str(tmp_path / "old.weights.h5")
        old.save_weights(path)
        expected = keras.ops.convert_to_numpy(old(latents))

    new = VAEDecoder(**arguments)
    assert not any(type(layer) is keras.layers.Conv2D for layer in new.layers)
    new(latents)
    new.load_weights(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(new(latents)), expected, rtol=0,
                               atol=1e-5 * np.abs(expected).max())
