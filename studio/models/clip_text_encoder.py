"""CLIP text encoder: token ids to the per-token context Stable Diffusion uses."""

import keras
from keras import ops

from studio.models.clip_encoder_layer import CLIPEncoderLayer
from studio.models.clip_position_embedding import CLIPPositionEmbedding

# Which hidden states the encoder returns: the last layer's, final
# layer-normed (SD 1.x / 2.x), or the penultimate layer's as they are (SDXL).
HIDDEN_STATES_LAYERS = ("final", "penultimate")


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
        hidden_states_layer: `"final"` (the last layer's states after the
            final layer norm: SD 1.x / 2.x) or `"penultimate"` (the states
            entering the last layer, without the final norm: SDXL's
            `hidden_states[-2]`; needs `return_pooled=True`, which keeps the
            last layer in use).
        return_pooled: bool. Whether the model also returns the pooled
            vector: the final layer-normed state of the end token
            (transformers' `pooler_output`), through `text_projection` when
            `projection_dim` is set. The output is then a dict.
        projection_dim: None, or the width of a bias-free projection of the
            pooled vector (`CLIPTextModelWithProjection.text_projection`;
            OpenCLIP bigG in SDXL: 1280).
        end_token_id: where the pooled vector is read: None at the largest
            token id of each row (transformers' rule for configs with the
            legacy `eos_token_id=2`, as SDXL's), or an id: its first
            position in each row.
        dtype: str or `keras.DTypePolicy`. Dtype policy of every layer, e.g.
            `"float32"`, `"mixed_float16"`, `"mixed_bfloat16"`. The output is
            always float32.
        **kwargs: `name` and other `keras.Model` arguments.

    Call arguments:
        token_ids: int32 tensor of shape `(batch, length)`,
            `length <= sequence_length`.

    Returns:
        float32 tensor of shape `(batch, length, hidden_dim)`; with
        `return_pooled`, a dict of it (`"hidden_states"`) and the float32
        `"pooled"` vector, shape `(batch, projection_dim or hidden_dim)`.

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
        hidden_states_layer="final",
        return_pooled=False,
        projection_dim=None,
        end_token_id=None,
        dtype=None,
        **kwargs,
    ):
        _check_outputs(hidden_states_layer, return_pooled, projection_dim, num_layers)
        self.hidden_states_layer = hidden_states_layer
        self.return_pooled = return_pooled
        self.projection_dim = projection_dim
        self.end_token_id = end_token_id

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
        self.text_projection = None
        if projection_dim is not None:
            self.text_projection = keras.layers.Dense(
                projection_dim, use_bias=False, dtype=dtype, name="text_projection"
            )

        # === Functional model ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        hidden_states = self._encode(self.token_embedding(token_ids), token_ids)
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

    def _encode(self, token_embeddings, token_ids):
        x = self.position_embedding(token_embeddings)
        penultimate = x
        for index, layer in enumerate(self.encoder_layers):
            if index == len(self.encoder_layers) - 1:
                penultimate = x
            x = layer(x)
        final = self.final_layer_norm(x)
        hidden_states = penultimate if self.hidden_states_layer == "penultimate" else final
        # Mixed-precision callers still get float32 context.
        hidden_states = ops.cast(hidden_states, "float32")
        if not self.return_pooled:
            return hidden_states
        if self.end_token_id is None:
            positions = ops.argmax(token_ids, axis=-1)
        else:
            is_end = ops.cast(ops.equal(token_ids, self.end_token_id), "int32")
            positions = ops.argmax(is_end, axis=-1)
        positions = ops.cast(positions, "int32")[:, None, None]
        pooled = ops.take_along_axis(final, positions, axis=1)[:, 0, :]
        if self.text_projection is not None:
            pooled = self.text_projection(pooled)
        return {"hidden_states": hidden_states, "pooled": ops.cast(pooled, "float32")}

    def encode_token_embeddings(self, token_embeddings, token_ids=None):
        """Runs the encoder on token vectors instead of token ids.

        `encoder.encode_token_embeddings(encoder.token_embedding(ids))`
        equals `encoder(ids)`; textual inversion swaps some of the vectors
        for trainable ones before calling this.

        Args:
            token_embeddings: float tensor of shape
                `(batch, length, hidden_dim)`, `length <= sequence_length`.
            token_ids: the ids the vectors stand for, `(batch, length)`:
                needed with `return_pooled` (they show where the end token
                is).

        Returns:
            What calling the encoder on the ids returns.

        Raises:
            ValueError: `return_pooled` without `token_ids`.
        """
        if self.return_pooled and token_ids is None:
            raise ValueError(
                "This encoder returns a pooled vector, read at the end token: give "
                "`token_ids` with the token vectors. Received: token_ids=None"
            )
        return self._encode(token_embeddings, token_ids)

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
            "hidden_states_layer": self.hidden_states_layer,
            "return_pooled": self.return_pooled,
            "projection_dim": self.projection_dim,
            "end_token_id": self.end_token_id,
        }


def _check_outputs(hidden_states_layer, return_pooled, projection_dim, num_layers):
    """Raises a ValueError naming the first output option that cannot be."""
    if hidden_states_layer not in HIDDEN_STATES_LAYERS:
        raise ValueError(
            f"`hidden_states_layer` must be one of {HIDDEN_STATES_LAYERS}. "
            f"Received: hidden_states_layer={hidden_states_layer!r}"
        )
    if hidden_states_layer == "penultimate" and not return_pooled:
        raise ValueError(
            "Penultimate hidden states leave the last layer and the final norm unused; "
            "set `return_pooled=True` (SDXL's encoders), which reads them, or drop the "
            "last layer from `num_layers`. Received: hidden_states_layer='penultimate', "
            "return_pooled=False"
        )
    if hidden_states_layer == "penultimate" and num_layers < 2:
        raise ValueError(
            "Penultimate hidden states need at least 2 layers. "
            f"Received: num_layers={num_layers}"
        )
    if projection_dim is not None and not return_pooled:
        raise ValueError(
            "`projection_dim` projects the pooled vector; set `return_pooled=True`. "
            f"Received: projection_dim={projection_dim}, return_pooled=False"
        )
