"""One transformer block of the UNet: self-attention, cross-attention, GEGLU."""

import keras

from studio.models.numerics_arguments import (
    KERAS_CV_GELU_APPROXIMATE,
    check_gelu_approximate,
)
from studio.models.unet_cross_attention import UNetCrossAttention

# Stable Diffusion's LayerNorm epsilon (KerasCV's and diffusers' alike).
LAYER_NORM_EPSILON = 1e-5
# Width of the feed-forward's hidden layer, in multiples of the block's width.
FEED_FORWARD_MULTIPLIER = 4


@keras.saving.register_keras_serializable(package="studio")
class UNetTransformerBlock(keras.layers.Layer):
    """Pre-norm transformer block over a sequence of image positions.

    `x = x + self_attention(norm1(x))`, then
    `x = x + cross_attention(norm2(x), context)`, then
    `x = x + dense(geglu(norm3(x)))`, where `geglu(y) = a * gelu(b)` for the
    two halves `a, b` of a dense projection of `y` to
    `2 * FEED_FORWARD_MULTIPLIER * width` units.

    GELU is the tanh approximation by default, as in KerasCV; the original
    PyTorch model and diffusers use the exact erf form
    (`gelu_approximate=False`). The two differ by less than 5e-4.
    Sublayers are created in the order of KerasCV's `BasicTransformerBlock`,
    so the `weights` lists match in order and shapes.

    Args:
        num_heads: int. Attention heads.
        head_size: int. Size of each head; `num_heads * head_size` must equal
            the input's channels.
        gelu_approximate: bool. Whether the GEGLU's GELU is the tanh
            approximation (KerasCV) rather than the exact erf form
            (diffusers).
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: tensor of shape `(batch, length, num_heads * head_size)`.
        context: tensor of shape `(batch, context_length, context_dim)`.

    Returns:
        A tensor of the shape of `inputs`.
    """

    def __init__(
        self,
        num_heads,
        head_size,
        gelu_approximate=KERAS_CV_GELU_APPROXIMATE,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_size = head_size
        self.gelu_approximate = check_gelu_approximate(gelu_approximate)
        width = num_heads * head_size
        self.hidden_units = FEED_FORWARD_MULTIPLIER * width
        self.norm1 = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, dtype=self.dtype_policy
        )
        self.self_attention = UNetCrossAttention(
            num_heads, head_size, dtype=self.dtype_policy
        )
        self.norm2 = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, dtype=self.dtype_policy
        )
        self.cross_attention = UNetCrossAttention(
            num_heads, head_size, dtype=self.dtype_policy
        )
        self.norm3 = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, dtype=self.dtype_policy
        )
        # One projection to both GEGLU halves, as in the released weights.
        self.geglu_projection = keras.layers.Dense(
            2 * self.hidden_units, dtype=self.dtype_policy
        )
        self.output_projection = keras.layers.Dense(
            width, dtype=self.dtype_policy
        )

    def build(self, inputs_shape, context_shape):
        self.norm1.build(inputs_shape)
        self.self_attention.build(inputs_shape)
        self.norm2.build(inputs_shape)
        self.cross_attention.build(inputs_shape, context_shape)
        self.norm3.build(inputs_shape)
        self.geglu_projection.build(inputs_shape)
        self.output_projection.build((*inputs_shape[:-1], self.hidden_units))

    def call(self, inputs, context):
        x = inputs + self.self_attention(self.norm1(inputs))
        x = x + self.cross_attention(self.norm2(x), context)
        hidden = self.geglu_projection(self.norm3(x))
        values = hidden[..., : self.hidden_units]
        gates = hidden[..., self.hidden_units :]
        hidden = values * keras.activations.gelu(
            gates, approximate=self.gelu_approximate
        )
        return x + self.output_projection(hidden)

    def compute_output_shape(self, inputs_shape, context_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "head_size": self.head_size,
                "gelu_approximate": self.gelu_approximate,
            }
        )
        return config
