"""The residual block of Stable Diffusion's VAE encoder and decoder."""

import keras

from studio.models.unet_conv2d import UNetConv2D
from studio.models.numerics_arguments import (
    KERAS_CV_GROUP_NORM_EPSILON,
    check_norm_epsilon,
)


@keras.saving.register_keras_serializable(package="studio")
class VAEResidualBlock(keras.layers.Layer):
    """Two (group norm, swish, 3x3 conv) steps plus a skip connection.

    The skip connection is a 1x1 convolution when the input width differs
    from `filters`, the identity otherwise. Sub-layers are created in the
    order of KerasCV's `ResnetBlock` (norm, conv, norm, conv, projection) so
    the weight lists line up one to one.

    Args:
        filters: int. Number of output channels.
        norm_groups: int. Groups of both group norms; must divide the input
            width and `filters`.
        norm_epsilon: float. Epsilon of both group norms: 1e-5 as in
            KerasCV, 1e-6 as in diffusers' `AutoencoderKL`.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: float tensor of shape `(batch, height, width, channels)`.

    Returns:
        Tensor of shape `(batch, height, width, filters)`.
    """

    def __init__(
        self,
        filters,
        norm_groups=32,
        norm_epsilon=KERAS_CV_GROUP_NORM_EPSILON,
        **kwargs,
    ):
        super().__init__(**kwargs)
        norm_epsilon = check_norm_epsilon("norm_epsilon", norm_epsilon)
        self.filters = filters
        self.norm_groups = norm_groups
        self.norm_epsilon = norm_epsilon

        def group_norm(name):
            return keras.layers.GroupNormalization(
                groups=norm_groups,
                epsilon=norm_epsilon,
                dtype=self.dtype_policy,
                name=name,
            )

        def conv(name):
            return UNetConv2D(
                filters, 3, padding="same", dtype=self.dtype_policy, name=name
            )

        self.norm_1 = group_norm("norm_1")
        self.conv_1 = conv("conv_1")
        self.norm_2 = group_norm("norm_2")
        self.conv_2 = conv("conv_2")
        self.shortcut = None

    def build(self, input_shape):
        output_shape = tuple(input_shape[:-1]) + (self.filters,)
        self.norm_1.build(input_shape)
        self.conv_1.build(input_shape)
        self.norm_2.build(output_shape)
        self.conv_2.build(output_shape)
        if input_shape[-1] != self.filters:
            self.shortcut = keras.layers.Conv2D(
                self.filters, 1, dtype=self.dtype_policy, name="shortcut"
            )
            self.shortcut.build(input_shape)
        self.built = True

    def call(self, inputs):
        x = self.conv_1(keras.activations.silu(self.norm_1(inputs)))
        x = self.conv_2(keras.activations.silu(self.norm_2(x)))
        skip = inputs if self.shortcut is None else self.shortcut(inputs)
        return x + skip

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "norm_groups": self.norm_groups,
                "norm_epsilon": self.norm_epsilon,
            }
        )
        return config
