"""UNet and its blocks compute what KerasCV's Stable Diffusion UNets compute.

KerasCV's random weights are copied into ours by position (the `weights`
lists must match in order and shapes) and both run on the same inputs.
"""

import keras
import numpy as np
import pytest

from studio.models.unet import UNet
from studio.models.unet_cross_attention import UNetCrossAttention
from studio.models.unet_downsample import UNetDownsample
from studio.models.unet_resnet_block import UNetResnetBlock
from studio.models.unet_spatial_transformer import UNetSpatialTransformer
from studio.models.unet_timestep_embedding import UNetTimestepEmbedding
from studio.models.unet_upsample import UNetUpsample

pytestmark = [
    pytest.mark.keras_cv,
    pytest.mark.skipif(
        keras.config.backend() != "tensorflow",
        reason="keras_cv runs on the TensorFlow backend only",
    ),
]

SD_V1_CONFIG = {
    "block_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_levels": [True, True, True, False],
    "context_dim": 768,
    "num_heads": 8,
    "transformer_projection": "conv",
    "transformer_depth": 1,
    "norm_groups": 32,
    "latent_channels": 4,
}
SD_V2_CONFIG = {
    **SD_V1_CONFIG,
    "context_dim": 1024,
    "num_heads": None,
    "head_size": 64,
    "transformer_projection": "linear",
}
# Relative tolerance of the float32 comparisons with KerasCV.
PARITY_TOLERANCE = 1e-4
# KerasCV's Stable Diffusion: the timestep embedding's width, the VAE's
# downsampling factor and the text encoder's sequence length.
KERAS_CV_TIMESTEP_EMBEDDING_DIM = 320
VAE_DOWNSAMPLING = 8
MAX_TEXT_LENGTH = 77


def keras_cv_diffusion_module():
    from keras_cv.src.models.stable_diffusion import diffusion_model

    return diffusion_model


def keras_cv_timestep_embedding(timesteps):
    """KerasCV's own embedding, one timestep at a time, stacked."""
    from keras_cv.src.models.stable_diffusion.stable_diffusion import (
        StableDiffusionBase,
    )

    # The method does not use `self`.
    return np.concatenate(
        [
            keras.ops.convert_to_numpy(
                StableDiffusionBase._get_timestep_embedding(None, int(t), 1)
            )
            for t in timesteps
        ]
    )


def random_array(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def assert_close(actual, expected):
    actual = keras.ops.convert_to_numpy(actual)
    expected = keras.ops.convert_to_numpy(expected)
    assert actual.shape == expected.shape
    scale = np.max(np.abs(expected))
    assert scale > 0
    error = np.max(np.abs(actual - expected))
    assert error <= PARITY_TOLERANCE * scale, (error, scale)


def copy_weights(ours, theirs):
    assert [tuple(w.shape) for w in ours.weights] == [
        tuple(w.shape) for w in theirs.weights
    ]
    ours.set_weights(theirs.get_weights())


def copy_weights_one_by_one(ours, theirs):
    """`copy_weights` without a third copy of all weights in memory."""
    assert [tuple(w.shape) for w in ours.weights] == [
        tuple(w.shape) for w in theirs.weights
    ]
    for our_weight, their_weight in zip(ours.weights, theirs.weights):
        our_weight.assign(their_weight)


def test_timestep_embedding_equals_keras_cv():
    timesteps = np.array([0, 1, 37, 500, 999])
    ours = UNetTimestepEmbedding(KERAS_CV_TIMESTEP_EMBEDDING_DIM)(timesteps)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(ours), keras_cv_timestep_embedding(timesteps)
    )


@pytest.mark.parametrize("in_channels", [32, 64])
def test_resnet_block_matches_keras_cv(in_channels):
    # 64 -> 32 channels needs the 1x1 shortcut convolution.
    inputs = random_array((2, 4, 4, in_channels), seed=1)
    embedding = random_array((2, 48), seed=2)
    theirs = keras_cv_diffusion_module().ResBlock(32)
    expected = theirs([inputs, embedding])
    ours = UNetResnetBlock(32, norm_groups=32)
    ours(inputs, embedding)
    copy_weights(ours, theirs)
    assert_close(ours(inputs, embedding), expected)


@pytest.mark.parametrize(
    "projection, fully_connected", [("conv", False), ("linear", True)]
)
def test_spatial_transformer_matches_keras_cv(projection, fully_connected):
    inputs = random_array((2, 4, 6, 64), seed=3)
    context = random_array((2, 7, 24), seed=4)
    theirs = keras_cv_diffusion_module().SpatialTransformer(
        4, 16, fully_connected=fully_connected
    )
    expected = theirs([inputs, context])
    ours = UNetSpatialTransformer(4, 16, projection=projection, norm_groups=32)
    ours(inputs, context)
    copy_weights(ours, theirs)
    assert_close(ours(inputs, context), expected)


def test_self_attention_matches_keras_cv():
    inputs = random_array((2, 10, 32), seed=5)
    theirs = keras_cv_diffusion_module().CrossAttention(4, 8)
    expected = theirs(inputs)
    ours = UNetCrossAttention(4, 8)
    ours(inputs)
    copy_weights(ours, theirs)
    assert_close(ours(inputs), expected)


def test_downsample_and_upsample_match_keras_cv():
    module = keras_cv_diffusion_module()
    inputs = random_array((2, 6, 8, 16), seed=6)
    # KerasCV's downsampling step is a PaddedConv2D.
    from keras_cv.src.models.stable_diffusion.padded_conv2d import PaddedConv2D

    for ours, theirs in [
        (UNetDownsample(24), PaddedConv2D(24, 3, strides=2, padding=1)),
        (UNetUpsample(24), module.Upsample(24)),
    ]:
        expected = theirs(inputs)
        ours(inputs)
        copy_weights(ours, theirs)
        assert_close(ours(inputs), expected)


def assert_full_size_unet_matches(config, keras_cv_class, latent_size):
    image_size = VAE_DOWNSAMPLING * latent_size
    keras.utils.set_random_seed(0)
    theirs = keras_cv_class(
        image_size, image_size, MAX_TEXT_LENGTH, download_weights=False
    )
    ours = UNet(**config)
    # 860M weights: copying them all at once (`set_weights`) would hold a
    # third 3.4 GB copy.
    copy_weights_one_by_one(ours, theirs)

    timesteps = np.array([981, 21])
    latents = random_array((2, latent_size, latent_size, 4), seed=7)
    context = random_array((2, MAX_TEXT_LENGTH, config["context_dim"]), seed=8)
    expected = theirs.predict_on_batch(
        {
            "latent": latents,
            "timestep_embedding": keras_cv_timestep_embedding(timesteps),
            "context": context,
        }
    )
    outputs = ours.predict_on_batch(
        {"latents": latents, "timesteps": timesteps, "context": context}
    )
    assert_close(outputs, expected)


@pytest.mark.large
def test_sd_v1_config_matches_keras_cv_diffusion_model():
    module = keras_cv_diffusion_module()
    assert_full_size_unet_matches(SD_V1_CONFIG, module.DiffusionModel, 16)


@pytest.mark.large
def test_sd_v2_config_matches_keras_cv_diffusion_model_v2():
    module = keras_cv_diffusion_module()
    assert_full_size_unet_matches(SD_V2_CONFIG, module.DiffusionModelV2, 16)
