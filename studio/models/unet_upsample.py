"""The UNet's upsampling step: nearest-neighbour resize, then a convolution."""

import keras

from studio.models.unet_conv2d import UNetConv2D


@keras.saving.register_keras_serializable(package="studio")
class UNetUpsample(keras.layers.Layer):
    """Doubles height and width (nearest neighbour), then a 3x3 convolution.

    Args:
        filters: int. Output channels.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: tensor of shape `(batch, height, width, channels)`.

    Returns:
        A tensor of shape `(batch, 2 * height, 2 * width, filters)`.
    """

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.resize = keras.layers.UpSampling2D(
            2, interpolation="nearest", dtype=self.dtype_policy
        )
        self.conv = UNetConv2D(
            filters, 3, padding="same", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        # Weightless, but built: Keras' JAX `predict_on_batch` runs the whole
        # model eagerly once first if any layer of it is not.
        self.resize.build(input_shape)
        self.conv.build(self.resize.compute_output_shape(input_shape))

    def call(self, inputs):
        return self.conv(self.resize(inputs))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(
            self.resize.compute_output_shape(input_shape)
        )

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters})
        return config
