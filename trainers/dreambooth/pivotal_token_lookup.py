"""A placeholder token lookup whose vectors train for the first steps of a run, then hold."""

import keras
from keras import ops

from studio.embeddings.placeholder_embedding import PlaceholderEmbedding


class PivotalTokenLookup(keras.layers.Layer):
    """Placeholder vectors that train while `trains` is set and hold their value once it is not.

    Pivotal tuning trains a placeholder's vectors only for the first part
    of a run. Stopping their gradient is not enough: Adam's moments (and
    AdamW's decay) keep moving a variable whose gradient has turned zero.
    So the lookup keeps two sets of rows on the same frozen token table:
    `training_lookup` (trainable) and `held_lookup` (not trainable, a copy
    of the trained rows), and reads the first while `trains` is 1 and the
    second once it is 0. `step(trains_now)`, called by the trainer at the
    start of each training call, copies the trained rows while training
    goes on and turns `trains` off for good once `trains_now` is false;
    from then on the trained rows may drift but are never read.

    Both sets of rows and `trains` are variables of the layer, so a
    checkpoint that holds `state_variables` resumes exactly.

    Args:
        token_embedding: the frozen `keras.layers.Embedding` of a text
            encoder.
        first_new_id: the id of the first placeholder vector.
        initial_vectors: float array `(num_new, dim)`, the starting rows.
        output_dtype: dtype of the looked-up vectors (the encoder's
            compute dtype).
        **kwargs: `name` and other `keras.layers.Layer` arguments.

    Call arguments:
        token_ids: int tensor `(batch, length)`.

    Returns:
        Tensor `(batch, length, dim)` of `output_dtype`.
    """

    def __init__(self, token_embedding, first_new_id, initial_vectors, output_dtype="float32",
                 **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.training_lookup = PlaceholderEmbedding(
            token_embedding, first_new_id, initial_vectors, output_dtype=output_dtype,
            name=f"{self.name}_training")
        self.held_lookup = PlaceholderEmbedding(
            token_embedding, first_new_id, initial_vectors, output_dtype=output_dtype,
            name=f"{self.name}_held")
        self.held_lookup.trainable = False
        self.trains = self.add_weight(
            shape=(), initializer="ones", dtype="float32", trainable=False, name="trains",
            aggregation="only_first_replica")

    @property
    def new_vectors(self):
        """The trainable rows `(num_new, dim)` (read only while `trains` is set)."""
        return self.training_lookup.new_vectors

    @property
    def state_variables(self):
        """The non-trainable variables a resumed run needs: the held rows and `trains`."""
        return [self.held_lookup.new_vectors, self.trains]

    def step(self, trains_now):
        """Starts a training call: keeps a copy of the trained rows, or holds them from now on.

        Args:
            trains_now: bool scalar tensor, whether the vectors train in
                this call. Once false, they never train again.
        """
        trained = ops.greater(ops.convert_to_tensor(self.trains), 0.5)
        held = self.held_lookup.new_vectors
        held.assign(ops.where(trained, ops.convert_to_tensor(self.training_lookup.new_vectors),
                              ops.convert_to_tensor(held)))
        self.trains.assign(ops.cast(ops.logical_and(trained, trains_now), "float32"))

    def current_vectors(self):
        """The rows as generation reads them now, float32 `(num_new, dim)`."""
        return ops.where(ops.greater(ops.convert_to_tensor(self.trains), 0.5),
                         ops.convert_to_tensor(self.training_lookup.new_vectors),
                         ops.convert_to_tensor(self.held_lookup.new_vectors))

    def call(self, token_ids):
        return ops.where(ops.greater(ops.convert_to_tensor(self.trains), 0.5),
                         self.training_lookup(token_ids),
                         self.held_lookup(token_ids))

    def compute_output_spec(self, token_ids):
        return self.training_lookup.compute_output_spec(token_ids)
