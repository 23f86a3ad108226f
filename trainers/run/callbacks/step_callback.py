"""A Keras callback that counts optimizer updates, across resumed runs."""

import keras


class StepCallback(keras.callbacks.Callback):
    """Calls `on_step_end(step, logs)` after each optimizer update.

    `fit` calls `on_train_batch_end` once per batch, and its batch index
    restarts with each `fit` call. With gradient accumulation an update
    takes several batches, and a resumed run starts at a later step; this
    class turns batches into the run's update count, so every callback
    numbers steps the same way in a fresh and a resumed run.

    Set `initial_step` and `gradient_accumulation_steps` before `fit`
    (`TrainingRun` does).

    Args:
        initial_step: int, updates done before this `fit` call.
        gradient_accumulation_steps: int, batches per update.
    """

    def __init__(self, initial_step=0, gradient_accumulation_steps=1):
        super().__init__()
        self.initial_step = initial_step
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self._batches = 0

    @property
    def step(self):
        """Updates done so far, counting those before this `fit` call."""
        return self.initial_step + self._batches // self.gradient_accumulation_steps

    def on_train_begin(self, logs=None):
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self._batches % self.gradient_accumulation_steps == 0:
            self.on_step_end(self.step, logs or {})

    def on_step_end(self, step, logs):
        """Called after update number `step` (1-based) with `fit`'s logs."""

    def sync_model_state(self):
        """Makes the model's variables current.

        Under JAX, `fit` keeps the training state outside the model's
        variables between steps (and empties them); read or write variables
        in a callback only after this call.
        """
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()
