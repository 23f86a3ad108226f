"""`UNetConv2D`: Keras' convolution, computed as a matmul on tiny images."""

import keras
import numpy as np
import pytest
from keras import ops

from studio.models.unet_conv2d import UNetConv2D

# (batch, height, width, in channels, out channels, kernel size, stride,
# padding), as the UNet has them: "same" 3x3 (1-pixel-wide images use only
# the kernel's centre row or column), 1x1 shortcuts and projections, and
# the downsampling step's stride-2 "valid" 3x3 on a padded image.
SHAPES = [
    (2, 1, 1, 5, 7, 3, 1, "same"),
    (2, 2, 2, 5, 7, 3, 1, "same"),
    (1, 4, 4, 6, 3, 3, 1, "same"),
    (2, 1, 3, 4, 4, 3, 1, "same"),
    (1, 4, 2, 3, 5, 3, 1, "same"),
    (2, 2, 2, 6, 4, 1, 1, "valid"),
    (2, 3, 3, 4, 4, 3, 2, "valid"),
    (1, 5, 5, 4, 6, 3, 2, "valid"),
    (1, 9, 9, 3, 4, 3, 2, "valid"),
]


def output_shape(shape):
    batch, height, width, _, out_channels, kernel, stride, padding = shape
    if padding == "same":
        return (batch, height, width, out_channels)
    return (batch, (height - kernel) // stride + 1, (width - kernel) // stride + 1, out_channels)


def conv_pair(shape, trainable=False):
    """A `UNetConv2D` and a `keras.layers.Conv2D` with the same weights."""
    batch, height, width, in_channels, out_channels, kernel, stride, padding = shape
    options = dict(kernel_size=kernel, strides=stride, padding=padding)
    ours = UNetConv2D(out_channels, **options)
    ours.build((batch, height, width, in_channels))
    reference = keras.layers.Conv2D(out_channels, **options)
    reference.build((batch, height, width, in_channels))
    rng = np.random.default_rng(sum(shape[:7]))
    weights = [rng.standard_normal(w.shape).astype("float32") for w in ours.get_weights()]
    ours.set_weights(weights)
    reference.set_weights(weights)
    ours.trainable = reference.trainable = trainable
    return ours, reference


def output_and_gradients(layer, images, upstream, compiled=False):
    """The layer's output, and the gradients of `sum(output * upstream)` (TensorFlow)."""
    import tensorflow as tf

    def run(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = layer(images)
            total = tf.reduce_sum(outputs * upstream)
        sources = [images] + [variable.value for variable in layer.trainable_weights]
        return outputs, tape.gradient(total, sources)

    if compiled:
        run = tf.function(run)
    outputs, gradients = run(tf.constant(images))
    return ops.convert_to_numpy(outputs), [ops.convert_to_numpy(g) for g in gradients]


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "graph"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_output_and_input_gradient_equal_keras(shape, compiled):
    ours, reference = conv_pair(shape)
    assert ours.uses_matmul(np.zeros(shape[:4]))
    rng = np.random.default_rng(1)
    images = rng.standard_normal(shape[:4]).astype("float32")
    upstream = rng.standard_normal(output_shape(shape)).astype("float32")
    output, (gradient,) = output_and_gradients(ours, images, upstream, compiled)
    expected_output, (expected,) = output_and_gradients(reference, images, upstream, compiled)
    np.testing.assert_allclose(output, expected_output, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert np.abs(expected).max() > 0


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[3], SHAPES[7]], ids=str)
def test_a_trainable_kernel_gets_keras_gradient(shape):
    ours, reference = conv_pair(shape, trainable=True)
    assert ours.uses_matmul(np.zeros(shape[:4]))
    rng = np.random.default_rng(2)
    images = rng.standard_normal(shape[:4]).astype("float32")
    upstream = rng.standard_normal(output_shape(shape)).astype("float32")
    _, gradients = output_and_gradients(ours, images, upstream)
    _, expected = output_and_gradients(reference, images, upstream)
    assert len(gradients) == 3  # images, kernel, bias
    for gradient, wanted in zip(gradients, expected):
        np.testing.assert_allclose(gradient, wanted, rtol=1e-5, atol=1e-6)


def test_only_small_same_padded_stride_one_images_use_the_matmul():
    small = np.zeros((1, 4, 4, 3))
    large = np.zeros((1, 8, 8, 3))
    layer, _ = conv_pair((1, 4, 4, 3, 3, 3, 1, "same"))
    assert layer.uses_matmul(small)
    assert not layer.uses_matmul(large)
    assert not layer.uses_matmul((None, None, None, 3))
    # TensorFlow pads a strided "same" convolution unevenly: not written here.
    assert not UNetConv2D(3, 3, strides=2, padding="same").uses_matmul(small)
    # A stride-2 "valid" convolution of a padded 9x9 image has 4x4 outputs,
    # of a 10x10 one too, of a 11x11 one 5x5.
    strided = UNetConv2D(3, 3, strides=2)
    assert strided.uses_matmul((1, 10, 10, 3))
    assert not strided.uses_matmul((1, 11, 11, 3))
    assert not UNetConv2D(3, 3, dilation_rate=2, padding="same").uses_matmul(small)


def test_serializes_as_itself():
    layer = UNetConv2D(5, 3, padding="same", name="conv")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is UNetConv2D
    assert restored.get_config() == layer.get_config()


@pytest.mark.tensorflow_only
def test_frozen_unet_output_and_context_gradient_are_unchanged(monkeypatch):
    """End to end: the tiny UNet's output and gradient to its context, with and without matmuls."""
    import tensorflow as tf

    from studio.models import StableDiffusionBackbone

    backbone = StableDiffusionBackbone.from_preset("tiny", load_weights=False)
    unet = backbone.unet
    unet.trainable = False
    size = 16 // backbone.vae_decoder.upsampling_factor
    rng = np.random.default_rng(3)
    latents = rng.standard_normal((2, size, size, unet.latent_channels)).astype("float32")
    context = tf.constant(
        rng.standard_normal((2, 77, unet.context_dim)).astype("float32")
    )

    def output_and_context_gradient():
        with tf.GradientTape() as tape:
            tape.watch(context)
            outputs = unet(
                {
                    "latents": tf.constant(latents),
                    "timesteps": tf.constant([10, 900]),
                    "context": context,
                }
            )
            total = tf.reduce_sum(outputs**2)
        return outputs.numpy(), tape.gradient(total, context).numpy()

    output, fast = output_and_context_gradient()
    monkeypatch.setattr(UNetConv2D, "MATMUL_MAX_PIXELS", 0)
    expected_output, plain = output_and_context_gradient()
    np.testing.assert_allclose(output, expected_output, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-5 * np.abs(plain).max())
    assert np.abs(plain).max() > 0


@pytest.mark.skipif(
    keras.config.backend() != "jax",
    reason="JAX's gradients; .ci/run runs tests/models again with KERAS_BACKEND=jax",
)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_jax_gradient_equals_keras(shape):
    import jax

    ours, reference = conv_pair(shape)
    batch, height, width, in_channels = shape[:4]
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, height, width, in_channels)).astype("float32")
    upstream = rng.standard_normal(reference.compute_output_shape(images.shape))
    gradients = [
        np.asarray(jax.jit(jax.grad(lambda x, l=layer: (l(x) * upstream).sum()))(images))
        for layer in (ours, reference)
    ]
    assert ours.uses_matmul(images)
    np.testing.assert_allclose(
        np.asarray(ours(images)), np.asarray(reference(images)), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(gradients[0], gradients[1], rtol=1e-5, atol=1e-5)
