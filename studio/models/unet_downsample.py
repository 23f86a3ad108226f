"""The UNet's downsampling step: a strided convolution."""

import keras

from studio.models.unet_conv2d import UNetConv2D


@keras.saving.register_keras_serializable(package="studio")
class UNetDownsample(keras.layers.Layer):
    """Halves height and width with a 3x3 convolution of stride 2.

    The input is zero-padded by one pixel on every side, as in Stable
    Diffusion; `padding="same"` would pad only the bottom and right and
    shift the output by half a pixel, so the released weights would not fit.

    Args:
        filters: int. Output channels.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: tensor of shape `(batch, height, width, channels)`, with even
            `height` and `width`.

    Returns:
        A tensor of shape `(batch, height / 2, width / 2, filters)`.
    """

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.padding = keras.layers.ZeroPadding2D(1, dtype=self.dtype_policy)
        self.conv = UNetConv2D(
            filters, 3, strides=2, dtype=self.dtype_policy
        )

    def build(self, input_shape):
        # Weightless, but built: Keras' JAX `predict_on_batch` runs the whole
        # model eagerly once first if any layer of it is not.
        self.padding.build(input_shape)
        self.conv.build(self.padding.compute_output_shape(input_shape))

    def call(self, inputs):
        return self.conv(self.padding(inputs))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(
            self.padding.compute_output_shape(input_shape)
        )

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters})
        return config
