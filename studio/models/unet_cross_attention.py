"""Multi-head attention of the UNet's transformer blocks (self or cross)."""

import keras
from keras import ops

from studio.models.dot_product_attention import dot_product_attention


@keras.saving.register_keras_serializable(package="studio")
class UNetCrossAttention(keras.layers.Layer):
    """Multi-head attention whose keys and values come from a context.

    With no context it is self-attention. Queries, keys and values are
    projected without bias, the output with bias, as in Stable Diffusion.
    The attention itself is `keras.ops.dot_product_attention` (through
    `studio.models.dot_product_attention`), so a backend with a fused
    (flash) kernel uses it where it can train.

    Args:
        num_heads: int. Number of attention heads.
        head_size: int. Size of each head; the projections have
            `num_heads * head_size` units, which must equal the query's
            channels.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: queries, tensor of shape `(batch, query_length, channels)`.
        context: optional tensor of shape `(batch, context_length,
            context_dim)`; `None` attends to `inputs` itself.

    Returns:
        A tensor of shape `(batch, query_length, num_heads * head_size)`.
    """

    def __init__(self, num_heads, head_size, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_size = head_size
        units = num_heads * head_size
        self.query_projection = keras.layers.Dense(
            units, use_bias=False, dtype=self.dtype_policy
        )
        self.key_projection = keras.layers.Dense(
            units, use_bias=False, dtype=self.dtype_policy
        )
        self.value_projection = keras.layers.Dense(
            units, use_bias=False, dtype=self.dtype_policy
        )
        self.output_projection = keras.layers.Dense(
            units, dtype=self.dtype_policy
        )

    def build(self, inputs_shape, context_shape=None):
        if context_shape is None:
            context_shape = inputs_shape
        self.query_projection.build(inputs_shape)
        self.key_projection.build(context_shape)
        self.value_projection.build(context_shape)
        self.output_projection.build(self.compute_output_shape(inputs_shape))

    def _split_heads(self, x):
        # (batch, length, heads * size) -> (batch, length, heads, size), the
        # layout `dot_product_attention` expects.
        return ops.reshape(
            x, (*ops.shape(x)[:-1], self.num_heads, self.head_size)
        )

    def call(self, inputs, context=None):
        if context is None:
            context = inputs
        query = self._split_heads(self.query_projection(inputs))
        key = self._split_heads(self.key_projection(context))
        value = self._split_heads(self.value_projection(context))
        attended = dot_product_attention(query, key, value)
        attended = ops.reshape(
            attended,
            (*ops.shape(attended)[:-2], self.num_heads * self.head_size),
        )
        return self.output_projection(attended)

    def compute_output_shape(self, inputs_shape, context_shape=None):
        return (*inputs_shape[:-1], self.num_heads * self.head_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"num_heads": self.num_heads, "head_size": self.head_size}
        )
        return config
