"""Token lookup that joins a frozen vocabulary table to a few trainable rows."""

import keras
from keras import ops


class PlaceholderEmbedding(keras.layers.Layer):
    """Looks up token vectors: frozen rows for the vocabulary, trainable ones for placeholders.

    Ids below `first_new_id` read the frozen table (the text encoder's own
    `token_embedding`, shared, not copied); ids from `first_new_id` on read
    `new_vectors`, a small float32 variable of shape `(num_new, dim)`. Only
    that variable is trainable, so gradients and optimizer state are
    `(num_new, dim)` instead of the whole `(vocabulary_size, dim)` table.

    The table may have more rows than the tokenizer has ids (the tiny preset's
    600 rows for 514 tokens); rows from `first_new_id` on are then never read.

    Args:
        token_embedding: the frozen `keras.layers.Embedding` of the text
            encoder (its `embeddings` variable is read, never written).
        first_new_id: int. The id of the first placeholder vector; every
            smaller id is a vocabulary token.
        initial_vectors: float array `(num_new, dim)`, the starting values
            of the placeholder vectors.
        output_dtype: dtype of the looked-up vectors (the text encoder's
            compute dtype); the lookup itself is float32.
        **kwargs: `name` and other `keras.layers.Layer` arguments.

    Call arguments:
        token_ids: int tensor `(batch, length)`, ids below
            `first_new_id + num_new`.

    Returns:
        Tensor `(batch, length, dim)` of `output_dtype`.
    """

    def __init__(
        self,
        token_embedding,
        first_new_id,
        initial_vectors,
        output_dtype="float32",
        **kwargs,
    ):
        # The trainable rows stay float32 whatever the global policy.
        super().__init__(dtype="float32", **kwargs)
        initial_vectors = ops.convert_to_numpy(initial_vectors).astype("float32")
        if initial_vectors.ndim != 2 or initial_vectors.shape[0] < 1:
            raise ValueError(
                "`initial_vectors` must have shape (num_new, dim) with num_new >= 1. "
                f"Received: shape {initial_vectors.shape}"
            )
        table_rows, dim = token_embedding.input_dim, token_embedding.output_dim
        if initial_vectors.shape[1] != dim:
            raise ValueError(
                f"`initial_vectors` must be {dim} wide, like the token embedding. "
                f"Received: shape {initial_vectors.shape}"
            )
        if not 0 < first_new_id <= table_rows:
            raise ValueError(
                f"`first_new_id` must be in [1, {table_rows}] (the table's rows). "
                f"Received: first_new_id={first_new_id}"
            )
        self.token_embedding = token_embedding
        self.first_new_id = int(first_new_id)
        self.output_dtype = keras.backend.standardize_dtype(output_dtype)
        self.num_new = int(initial_vectors.shape[0])
        self.new_vectors = self.add_weight(
            shape=initial_vectors.shape,
            initializer=keras.initializers.Constant(initial_vectors),
            dtype="float32",
            trainable=True,
            name="new_vectors",
        )

    def call(self, token_ids):
        token_ids = ops.cast(token_ids, "int32")
        is_new = ops.greater_equal(token_ids, self.first_new_id)
        # Gathered, then cast: a half-precision table is never copied whole.
        old = ops.take(
            self.token_embedding.embeddings,
            ops.minimum(token_ids, self.first_new_id - 1),
            axis=0,
        )
        old = ops.cast(old, "float32")
        # A one-hot product rather than a gather: its gradient is a dense
        # (num_new, dim) tensor on every backend. TensorFlow's gather
        # gradient is an IndexedSlices, which Keras' LossScaleOptimizer
        # wrongly finds finite when it holds NaN, so a bad step would not
        # be skipped.
        selector = ops.one_hot(token_ids - self.first_new_id, self.num_new, dtype="float32")
        new = ops.einsum("bln,nd->bld", selector, self.new_vectors)
        vectors = ops.where(ops.expand_dims(is_new, -1), new, old)
        return ops.cast(vectors, self.output_dtype)

    def compute_output_spec(self, token_ids):
        shape = tuple(token_ids.shape) + (self.token_embedding.output_dim,)
        return keras.KerasTensor(shape, dtype=self.output_dtype)
