"""The UNet's residual block, conditioned on the timestep embedding."""

import keras

from studio.models.numerics_arguments import (
    KERAS_CV_GROUP_NORM_EPSILON,
    check_norm_epsilon,
)
from studio.models.unet_conv2d import UNetConv2D


@keras.saving.register_keras_serializable(package="studio")
class UNetResnetBlock(keras.layers.Layer):
    """GroupNorm-swish-conv twice, with the timestep embedding added between.

    `out = conv2(swish(norm2(conv1(swish(norm1(x))) + dense(swish(emb)))))
    + shortcut(x)`, where `shortcut` is a 1x1 convolution when the input does
    not have `filters` channels and the identity otherwise.

    The sublayers are created in the order of KerasCV's `ResBlock`, so the
    `weights` lists match in order and shapes.

    Args:
        filters: int. Output channels.
        norm_groups: int. Groups of both GroupNorms; must divide the input
            channels and `filters`.
        norm_epsilon: float. Epsilon of both GroupNorms; 1e-5 in KerasCV
            and in diffusers (`UNet2DConditionModel`'s `norm_eps`).
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: tensor of shape `(batch, height, width, channels)`.
        embedding: timestep embedding of shape `(batch, embedding_dim)`.

    Returns:
        A tensor of shape `(batch, height, width, filters)`.
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
        self.norm1 = keras.layers.GroupNormalization(
            norm_groups, epsilon=norm_epsilon, dtype=self.dtype_policy
        )
        self.conv1 = UNetConv2D(
            filters, 3, padding="same", dtype=self.dtype_policy
        )
        self.embedding_projection = keras.layers.Dense(
            filters, dtype=self.dtype_policy
        )
        self.norm2 = keras.layers.GroupNormalization(
            norm_groups, epsilon=norm_epsilon, dtype=self.dtype_policy
        )
        self.conv2 = UNetConv2D(
            filters, 3, padding="same", dtype=self.dtype_policy
        )
        self.shortcut = None

    def build(self, inputs_shape, embedding_shape):
        output_shape = self.compute_output_shape(inputs_shape, embedding_shape)
        self.norm1.build(inputs_shape)
        self.conv1.build(inputs_shape)
        self.embedding_projection.build(embedding_shape)
        self.norm2.build(output_shape)
        self.conv2.build(output_shape)
        # Created here, after the other sublayers, because it exists only
        # when the channels change; being last also matches KerasCV's order.
        if inputs_shape[-1] != self.filters:
            self.shortcut = UNetConv2D(
                self.filters, 1, dtype=self.dtype_policy
            )
            self.shortcut.build(inputs_shape)

    def call(self, inputs, embedding):
        x = self.conv1(keras.activations.silu(self.norm1(inputs)))
        embedding = self.embedding_projection(keras.activations.silu(embedding))
        x = x + embedding[:, None, None, :]
        x = self.conv2(keras.activations.silu(self.norm2(x)))
        shortcut = inputs if self.shortcut is None else self.shortcut(inputs)
        return x + shortcut

    def compute_output_shape(self, inputs_shape, embedding_shape):
        return (*inputs_shape[:-1], self.filters)

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
