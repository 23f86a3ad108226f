"""CLIP text encoder: token ids to the per-token context Stable Diffusion uses."""

import keras
from keras import ops

from studio.models.clip_encoder_layer import CLIPEncoderLayer
from studio.models.clip_position_embedding import CLIPPositionEmbedding


@keras.saving.register_keras_serializable(package="studio")
class CLIPTextEncoder(keras.Model):
    """The CLIP text transformer, returning the final layer-normed states.

    Its output is the whole sequence of hidden states after the final layer
    norm: the context that Stable Diffusion's UNet attends to. Attention is
    causal. Position ids are computed inside, so the only input is the
    token ids.

    At full size the weights line up one to one, in order, with KerasCV's
    `TextEncoder` (SD 1.x) or `TextEncoderV2` (SD 2.x), so
    `encoder.set_weights(keras_cv_encoder.get_weights())` works.

    For textual inversion, `token_embedding` is the token lookup table
    (a `keras.layers.Embedding` of `vocabulary_size` rows) and
    `encode_token_embeddings` runs the rest of the network on token vectors
    chosen by the caller.

    Args:
        vocabulary_size: int. Number of rows of the token embedding table.
        sequence_length: int. Longest token sequence (77 for SD); the number
            of learned position embeddings.
        hidden_dim: int. Width of the token vectors and of the output.
        num_layers: int. Number of transformer blocks.
        num_heads: int. Attention heads per block; must divide `hidden_dim`.
        intermediate_dim: int. Width of each block's MLP hidden layer.
        intermediate_activation: str. `"quick_gelu"` (OpenAI CLIP, SD 1.x),
            `"gelu"` (exact; OpenCLIP, SD 2.x) or `"gelu_approximate"` (tanh
            form, what KerasCV's `TextEncoderV2` computes).
        layer_norm_epsilon: float. Epsilon of every layer norm.
        dtype: str or `keras.DTypePolicy`. Dtype policy of every layer, e.g.
            `"float32"`, `"mixed_float16"`, `"mixed_bfloat16"`. The output is
            always float32.
        **kwargs: `name` and other `keras.Model` arguments.

    Call arguments:
        token_ids: int32 tensor of shape `(batch, length)`,
            `length <= sequence_length`.

    Returns:
        float32 tensor of shape `(batch, length, hidden_dim)`.

    Example:
    ```python
    encoder = CLIPTextEncoder(
        vocabulary_size=600, sequence_length=77, hidden_dim=32,
        num_layers=2, num_heads=2, intermediate_dim=128,
    )
    context = encoder(np.zeros((1, 77), "int32"))  # (1, 77, 32)
    ```
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        hidden_dim,
        num_layers,
        num_heads,
        intermediate_dim,
        intermediate_activation="quick_gelu",
        layer_norm_epsilon=1e-5,
        dtype=None,
        **kwargs,
    ):
        # === Layers ===
        self.token_embedding = keras.layers.Embedding(
            vocabulary_size, hidden_dim, dtype=dtype, name="token_embedding"
        )
        self.position_embedding = CLIPPositionEmbedding(
            sequence_length, hidden_dim, dtype=dtype, name="position_embedding"
        )
        self.encoder_layers = [
            CLIPEncoderLayer(
                hidden_dim,
                num_heads,
                intermediate_dim,
                intermediate_activation=intermediate_activation,
                layer_norm_epsilon=layer_norm_epsilon,
                dtype=dtype,
                name=f"encoder_layer_{index}",
            )
            for index in range(num_layers)
        ]
        self.final_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name="final_layer_norm"
        )

        # === Functional model ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        hidden_states = self._encode(self.token_embedding(token_ids))
        super().__init__(
            inputs=token_ids, outputs=hidden_states, dtype=dtype, **kwargs
        )

        # Functional.__init__ ignores `dtype`; keep the policy for
        # get_config, as keras-hub's Backbone does.
        if dtype is not None:
            self.dtype_policy = keras.dtype_policies.get(dtype)

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.sequence_length = sequence_length
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.intermediate_activation = intermediate_activation
        self.layer_norm_epsilon = layer_norm_epsilon

    def _encode(self, token_embeddings):
        x = self.position_embedding(token_embeddings)
        for layer in self.encoder_layers:
            x = layer(x)
        x = self.final_layer_norm(x)
        # Mixed-precision callers still get float32 context.
        return ops.cast(x, "float32")

    def encode_token_embeddings(self, token_embeddings):
        """Runs the encoder on token vectors instead of token ids.

        `encoder.encode_token_embeddings(encoder.token_embedding(ids))`
        equals `encoder(ids)`; textual inversion swaps some of the vectors
        for trainable ones before calling this.

        Args:
            token_embeddings: float tensor of shape
                `(batch, length, hidden_dim)`, `length <= sequence_length`.

        Returns:
            float32 tensor of shape `(batch, length, hidden_dim)`.
        """
        return self._encode(token_embeddings)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": self.dtype_policy.name,
            "vocabulary_size": self.vocabulary_size,
            "sequence_length": self.sequence_length,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "intermediate_activation": self.intermediate_activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }
