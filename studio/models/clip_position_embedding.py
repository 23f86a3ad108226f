"""Learned absolute position embeddings added to CLIP token embeddings."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="studio")
class CLIPPositionEmbedding(keras.layers.Layer):
    """Adds one learned vector per position to a sequence of token vectors.

    Position ids are `0, 1, ..., length - 1` of the input, computed here
    rather than taken as a model input, so callers only pass token ids (or
    token vectors, for textual inversion).

    Args:
        sequence_length: int. The longest sequence the layer accepts (77 in
            Stable Diffusion); the number of learned position vectors.
        hidden_dim: int. Size of each vector.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: float tensor of shape `(batch, length, hidden_dim)` with
            `length <= sequence_length`.

    Returns:
        `inputs` plus the first `length` position vectors, same shape.

    Raises:
        ValueError: if the static input length exceeds `sequence_length`.
    """

    def __init__(self, sequence_length, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = sequence_length
        self.hidden_dim = hidden_dim

    def build(self, input_shape):
        # Named like keras.layers.Embedding's table: the same (length, dim)
        # matrix that KerasCV keeps in its position Embedding layer.
        self.embeddings = self.add_weight(
            shape=(self.sequence_length, self.hidden_dim),
            initializer="uniform",
            name="embeddings",
        )
        self.built = True

    def call(self, inputs):
        length = inputs.shape[1]
        if length is not None and length > self.sequence_length:
            raise ValueError(
                "The token sequence must not be longer than `sequence_length`"
                f"={self.sequence_length}. Received: length={length}"
            )
        position_ids = ops.arange(ops.shape(inputs)[1], dtype="int32")
        positions = ops.take(self.embeddings, position_ids, axis=0)
        return inputs + ops.expand_dims(positions, axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "hidden_dim": self.hidden_dim,
            }
        )
        return config
