"""One pre-norm transformer block of the CLIP text encoder."""

import keras
from keras import ops

from studio.models.dot_product_attention import dot_product_attention

# OpenAI CLIP's sigmoid approximation of GELU: x * sigmoid(1.702 * x).
QUICK_GELU_SLOPE = 1.702


def _quick_gelu(x):
    return x * ops.sigmoid(QUICK_GELU_SLOPE * x)


def _gelu(x):
    return ops.gelu(x, approximate=False)


def _gelu_approximate(x):
    return ops.gelu(x, approximate=True)


# "gelu" is the exact erf form used by OpenCLIP (SD 2.x) and Hugging Face;
# KerasCV's TextEncoderV2 uses the tanh form, hence "gelu_approximate".
ACTIVATIONS = {
    "quick_gelu": _quick_gelu,
    "gelu": _gelu,
    "gelu_approximate": _gelu_approximate,
}


@keras.saving.register_keras_serializable(package="studio")
class CLIPEncoderLayer(keras.layers.Layer):
    """Causal self-attention and MLP, each behind a layer norm and residual.

    Attention runs through `keras.ops.dot_product_attention` (by way of
    `studio.models.dot_product_attention`), so backends with a fused kernel
    use it where it can train. The sub-layers are created in the order of
    KerasCV's `CLIPEncoderLayer` (layer norm, q/k/v/out projections, layer
    norm, two dense layers), so the weight lists line up one to one.

    Args:
        hidden_dim: int. Width of the token vectors.
        num_heads: int. Number of attention heads; must divide `hidden_dim`.
        intermediate_dim: int. Width of the MLP's hidden layer.
        intermediate_activation: str. One of `"quick_gelu"` (OpenAI CLIP,
            SD 1.x), `"gelu"` (exact, OpenCLIP, SD 2.x) or
            `"gelu_approximate"` (tanh form, as in KerasCV's SD 2.1 encoder).
        layer_norm_epsilon: float. Epsilon of both layer norms.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: float tensor of shape `(batch, length, hidden_dim)`.

    Returns:
        Tensor of the same shape.

    Raises:
        ValueError: if `num_heads` does not divide `hidden_dim` or the
            activation name is unknown.
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        intermediate_dim,
        intermediate_activation="quick_gelu",
        layer_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if hidden_dim % num_heads != 0:
            raise ValueError(
                "`num_heads` must divide `hidden_dim`. Received: "
                f"hidden_dim={hidden_dim}, num_heads={num_heads}"
            )
        if intermediate_activation not in ACTIVATIONS:
            raise ValueError(
                "`intermediate_activation` must be one of "
                f"{sorted(ACTIVATIONS)}. Received: "
                f"intermediate_activation={intermediate_activation!r}"
            )
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.intermediate_activation = intermediate_activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.head_dim = hidden_dim // num_heads
        self._activation = ACTIVATIONS[intermediate_activation]

        def dense(units, name):
            return keras.layers.Dense(
                units, dtype=self.dtype_policy, name=name
            )

        self.attention_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="attention_layer_norm",
        )
        self.query_dense = dense(hidden_dim, "query")
        self.key_dense = dense(hidden_dim, "key")
        self.value_dense = dense(hidden_dim, "value")
        self.output_dense = dense(hidden_dim, "attention_output")
        self.mlp_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="mlp_layer_norm",
        )
        self.intermediate_dense = dense(intermediate_dim, "intermediate")
        self.mlp_output_dense = dense(hidden_dim, "mlp_output")

    def build(self, input_shape):
        self.attention_layer_norm.build(input_shape)
        for layer in (self.query_dense, self.key_dense, self.value_dense):
            layer.build(input_shape)
        self.output_dense.build(input_shape)
        self.mlp_layer_norm.build(input_shape)
        self.intermediate_dense.build(input_shape)
        self.mlp_output_dense.build(
            tuple(input_shape[:-1]) + (self.intermediate_dim,)
        )
        self.built = True

    def _split_heads(self, x):
        return ops.reshape(
            x, ops.shape(x)[:-1] + (self.num_heads, self.head_dim)
        )

    def call(self, inputs):
        x = self.attention_layer_norm(inputs)
        query = self._split_heads(self.query_dense(x))
        key = self._split_heads(self.key_dense(x))
        value = self._split_heads(self.value_dense(x))
        attended = dot_product_attention(query, key, value, is_causal=True)
        attended = ops.reshape(
            attended, ops.shape(attended)[:-2] + (self.hidden_dim,)
        )
        x = inputs + self.output_dense(attended)

        residual = x
        x = self.mlp_layer_norm(x)
        x = self._activation(self.intermediate_dense(x))
        return residual + self.mlp_output_dense(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "intermediate_activation": self.intermediate_activation,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
