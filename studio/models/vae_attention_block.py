"""Single-head self-attention over the pixels of a VAE feature map."""

import keras
from keras import ops

from studio.models.dot_product_attention import dot_product_attention
from studio.models.numerics_arguments import (
    KERAS_CV_GROUP_NORM_EPSILON,
    check_norm_epsilon,
)


@keras.saving.register_keras_serializable(package="studio")
class VAEAttentionBlock(keras.layers.Layer):
    """Group norm, one-head self-attention across all pixels, residual.

    Queries, keys, values and the output projection are 1x1 convolutions,
    created in the order of KerasCV's `AttentionBlock` so the weight lists
    line up one to one. Attention runs through
    `keras.ops.dot_product_attention` with one head as wide as the map.

    Args:
        norm_groups: int. Groups of the group norm; must divide the width.
        norm_epsilon: float. Epsilon of the group norm: 1e-5 as in KerasCV,
            1e-6 as in diffusers' `AutoencoderKL`.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: float tensor of shape `(batch, height, width, channels)`.

    Returns:
        Tensor of the same shape.
    """

    def __init__(
        self, norm_groups=32, norm_epsilon=KERAS_CV_GROUP_NORM_EPSILON, **kwargs
    ):
        super().__init__(**kwargs)
        norm_epsilon = check_norm_epsilon("norm_epsilon", norm_epsilon)
        self.norm_groups = norm_groups
        self.norm_epsilon = norm_epsilon
        self.norm = keras.layers.GroupNormalization(
            groups=norm_groups,
            epsilon=norm_epsilon,
            dtype=self.dtype_policy,
            name="norm",
        )

    def build(self, input_shape):
        channels = input_shape[-1]

        def projection(name):
            layer = keras.layers.Conv2D(
                channels, 1, dtype=self.dtype_policy, name=name
            )
            layer.build(input_shape)
            return layer

        self.norm.build(input_shape)
        self.query = projection("query")
        self.key = projection("key")
        self.value = projection("value")
        self.output_projection = projection("output_projection")
        self.built = True

    def call(self, inputs):
        x = self.norm(inputs)
        shape = ops.shape(x)
        # (batch, height, width, channels) -> (batch, pixels, 1 head, channels)
        sequence_shape = (shape[0], -1, 1, shape[3])
        attended = dot_product_attention(
            ops.reshape(self.query(x), sequence_shape),
            ops.reshape(self.key(x), sequence_shape),
            ops.reshape(self.value(x), sequence_shape),
        )
        attended = ops.reshape(attended, shape)
        return inputs + self.output_projection(attended)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "norm_groups": self.norm_groups,
                "norm_epsilon": self.norm_epsilon,
            }
        )
        return config
