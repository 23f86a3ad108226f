"""Winograd 3x3 convolutions: equal to Keras' convolution, chosen only where asked and faster."""

import keras
import numpy as np
import pytest
from keras import ops

from studio.models import winograd_convolution as winograd
from studio.models.unet_conv2d import UNetConv2D
from studio.models.winograd_convolution import (
    winograd_by_default,
    winograd_convolution,
    winograd_convolutions,
    winograd_enabled,
    winograd_tile,
)

# Sizes that fill the tiles exactly and ones that leave a partial last
# tile (odd, prime, smaller than one tile).
IMAGE_SHAPES = [(2, 8, 8, 16), (1, 7, 5, 8), (3, 13, 10, 4), (1, 1, 1, 4), (1, 4, 12, 6)]


def keras_convolution(images, kernel):
    return ops.convert_to_numpy(ops.conv(images, kernel, strides=1, padding="same"))


@pytest.mark.parametrize("output_tile", [2, 4])
@pytest.mark.parametrize("shape", IMAGE_SHAPES)
def test_equals_keras_convolution(shape, output_tile):
    rng = np.random.default_rng(sum(shape) + output_tile)
    images = rng.standard_normal(shape).astype("float32")
    kernel = rng.standard_normal((3, 3, shape[3], 5)).astype("float32")

    ours = ops.convert_to_numpy(winograd_convolution(images, kernel, output_tile))
    expected = keras_convolution(images, kernel)
    assert ours.shape == expected.shape == shape[:3] + (5,)
    # Float rounding only: F(4x4)'s larger transform factors cost about
    # one more decimal digit than F(2x2).
    tolerance = {2: 2e-6, 4: 2e-5}[output_tile]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=tolerance * np.abs(expected).max())


@pytest.mark.parametrize("output_tile", [2, 4])
def test_a_single_tap_kernel_shifts_the_image(output_tile):
    # Closed form: a kernel with one 1 at tap (row, column) and in->out
    # channel (c, c) copies the image shifted by (row - 1, column - 1),
    # with zeros where "same" padding comes in.
    rng = np.random.default_rng(3)
    images = rng.integers(-8, 8, size=(2, 9, 6, 3)).astype("float32")
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    for row, column in [(0, 0), (1, 1), (2, 0), (0, 2)]:
        kernel = np.zeros((3, 3, 3, 3), "float32")
        for channel in range(3):
            kernel[row, column, channel, channel] = 1.0
        shifted = padded[:, row : row + 9, column : column + 6]
        ours = ops.convert_to_numpy(winograd_convolution(images, kernel, output_tile))
        np.testing.assert_allclose(ours, shifted, rtol=0, atol=1e-4)


def test_refuses_other_tiles():
    images = np.zeros((1, 4, 4, 2), "float32")
    with pytest.raises(ValueError, match="output_tile must be one of"):
        winograd_convolution(images, np.zeros((3, 3, 2, 2), "float32"), 3)


def test_the_rule_per_backend():
    sd_level = (3, 3, 320, 320)
    # TensorFlow: F(4x4) from 16x16 up, F(2x2) below, whatever the batch.
    assert winograd_tile((2, 32, 32, 320), sd_level, "float32", "tensorflow") == 4
    assert winograd_tile((2, 16, 16, 320), sd_level, "float32", "tensorflow") == 4
    assert winograd_tile((None, 16, 24, 320), sd_level, "float32", "tensorflow") == 4
    assert winograd_tile((2, 8, 8, 320), sd_level, "float32", "tensorflow") == 2
    assert winograd_tile((8, 8, 64, 320), sd_level, "float32", "tensorflow") == 2
    # JAX: F(4x4) from 2048 output pixels in the batch (an unknown batch
    # counts as one image); narrow inputs stay direct.
    assert winograd_tile((2, 32, 32, 320), sd_level, "float32", "jax") == 4
    assert winograd_tile((2, 16, 16, 320), sd_level, "float32", "jax") == 2
    assert winograd_tile((8, 16, 16, 320), sd_level, "float32", "jax") == 4
    assert winograd_tile((None, 32, 32, 320), sd_level, "float32", "jax") == 2
    assert winograd_tile((1, 256, 256, 128), (3, 3, 128, 128), "float32", "jax") is None
    assert winograd_tile((1, 256, 256, 128), (3, 3, 128, 128), "float32", "tensorflow") == 4
    # Never: unknown sizes, few channels, other kernels, half precision,
    # other backends.
    assert winograd_tile((2, None, 32, 320), sd_level, "float32", "tensorflow") is None
    assert winograd_tile((2, 32, 32, 4), (3, 3, 4, 320), "float32", "tensorflow") is None
    assert winograd_tile((2, 32, 32, 320), (3, 3, 320, 4), "float32", "tensorflow") is None
    assert winograd_tile((2, 32, 32, 320), (1, 1, 320, 320), "float32", "tensorflow") is None
    assert winograd_tile((2, 32, 32, 320), sd_level, "float16", "tensorflow") is None
    assert winograd_tile((2, 32, 32, 320), sd_level, "bfloat16", "jax") is None
    assert winograd_tile((2, 32, 32, 320), sd_level, "float32", "torch") is None


def test_the_default_follows_the_device_and_the_precision():
    on_cpu = keras.distribution.list_devices()[0].lower().startswith("cpu")
    assert winograd_by_default("float32") is on_cpu
    assert winograd_by_default("float16") is False
    assert winograd_by_default("bfloat16") is False


def test_the_switch_is_scoped():
    assert not winograd_enabled()
    with winograd_convolutions():
        assert winograd_enabled()
        with winograd_convolutions(False):
            assert not winograd_enabled()
        assert winograd_enabled()
    assert not winograd_enabled()
    with pytest.raises(RuntimeError), winograd_convolutions():
        raise RuntimeError("the block failed")
    assert not winograd_enabled()


@pytest.fixture
def narrow_channels_qualify(monkeypatch):
    """Let the few channels of test-sized layers take the Winograd path."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "JAX_MIN_CHANNELS", 1)


def conv_pair(out_channels, input_shape, **options):
    ours = UNetConv2D(out_channels, **options)
    ours.build(input_shape)
    reference = keras.layers.Conv2D(out_channels, **options)
    reference.build(input_shape)
    rng = np.random.default_rng(7)
    weights = [rng.standard_normal(w.shape).astype("float32") for w in ours.get_weights()]
    ours.set_weights(weights)
    reference.set_weights(weights)
    return ours, reference


def test_the_layer_uses_winograd_only_inside_the_block(narrow_channels_qualify, monkeypatch):
    calls = []
    original = winograd_convolution

    def spy(images, kernel, output_tile):
        calls.append((tuple(images.shape), output_tile))
        return original(images, kernel, output_tile)

    monkeypatch.setattr("studio.models.unet_conv2d.winograd_convolution", spy)
    images = np.random.default_rng(1).standard_normal((2, 8, 8, 6)).astype("float32")
    ours, reference = conv_pair(5, images.shape, kernel_size=3, padding="same")
    expected = ops.convert_to_numpy(reference(images))

    outside = ops.convert_to_numpy(ours(images))
    assert calls == []
    np.testing.assert_allclose(outside, expected, rtol=0, atol=1e-5 * np.abs(expected).max())

    with winograd_convolutions():
        inside = ops.convert_to_numpy(ours(images))
    assert calls == [((2, 8, 8, 6), winograd_tile((2, 8, 8, 6), (3, 3, 6, 5), "float32"))]
    # The bias is added as for the direct convolution.
    np.testing.assert_allclose(inside, expected, rtol=0, atol=2e-5 * np.abs(expected).max())

    # Strided, "valid", 1x1 and tiny (matmul) convolutions stay as they were.
    with winograd_convolutions():
        for options, shape in [
            (dict(kernel_size=3, strides=2, padding="same"), images.shape),
            (dict(kernel_size=3, padding="valid"), images.shape),
            (dict(kernel_size=1, padding="same"), images.shape),
            (dict(kernel_size=3, padding="same"), (2, 4, 4, 6)),
        ]:
            layer, _ = conv_pair(5, shape, **options)
            layer(np.zeros(shape, "float32"))
    assert len(calls) == 1


def test_sd_sized_layers_take_it_under_the_real_thresholds():
    layer = UNetConv2D(320, 3, padding="same")
    layer.build((2, 32, 32, 320))
    images = np.zeros((2, 32, 32, 320), "float32")
    assert layer.winograd_tile(images, layer.kernel) is None
    with winograd_convolutions():
        assert layer.winograd_tile(images, layer.kernel) == 4
