"""TensorBoard logging of a training run: loss, learning rate, extra scalars, images."""

import math

from keras import ops

from studio.trainers.run.callbacks.step_callback import StepCallback
from studio.trainers.run.summary_writer import SummaryWriter
from studio.trainers.run.positive_integer import check_positive_integer

# The `fit` log holding each step's own loss (see `LastValue`); Keras'
# `loss` is a running mean, the fallback for models without it.
STEP_LOSS_KEY = "step_loss"


class TrainingTensorBoard(StepCallback):
    """Logs the loss, learning rate and the model's own scalars every `log_every` steps.

    The last step of a `fit` is logged too, so that a run shorter than
    `log_every`, or whose length is no multiple of it, has its final loss.

    Works on every backend (see `SummaryWriter`). Other callbacks log images
    through `images`.

    Args:
        log_dir: the TensorBoard log folder.
        log_every: int >= 1, steps between two logged points.
        scalars: None, or a callable returning a dict name -> float logged
            with the loss (e.g. the trainer's vector norms), called with the
            model's variables current.
        initial_step: see `StepCallback`.
        gradient_accumulation_steps: see `StepCallback`.
    """

    def __init__(
        self,
        log_dir,
        log_every=10,
        scalars=None,
        initial_step=0,
        gradient_accumulation_steps=1,
    ):
        super().__init__(initial_step, gradient_accumulation_steps)
        self.log_dir = log_dir
        self.log_every = check_positive_integer("log_every", log_every)
        self.scalars = scalars
        self.writer = None
        self._unlogged = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._unlogged = None
        if self.writer is None:
            self.writer = SummaryWriter(self.log_dir)

    def on_step_end(self, step, logs):
        if step % self.log_every:
            # Logged at the end if it is the last step (see `on_train_end`).
            self._unlogged = (step, dict(logs))
            return
        self._unlogged = None
        self._log(step, logs)

    def _log(self, step, logs):
        loss = logs.get(STEP_LOSS_KEY, logs.get("loss"))
        if loss is not None and math.isfinite(float(loss)):
            self.writer.scalar("loss", float(loss), step)
        self.sync_model_state()
        rate = current_learning_rate(self.model.optimizer)
        self.writer.scalar("learning_rate", rate, step)
        for name, value in (self.scalars() if self.scalars else {}).items():
            self.writer.scalar(name, value, step)

    def images(self, tag, images, step):
        """Logs uint8 images `(count, height, width, 3)` at `step`."""
        if self.writer is None:
            self.writer = SummaryWriter(self.log_dir)
        self.writer.images(tag, images, step)
        self.writer.flush()

    def on_train_end(self, logs=None):
        # The last step is logged too, when it is no multiple of `log_every`
        # (a run shorter than `log_every`, or one stopped early).
        if self._unlogged is not None:
            self._log(*self._unlogged)
            self._unlogged = None
        if self.writer is not None:
            self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def current_learning_rate(optimizer):
    """The learning rate the optimizer's next update uses, as a float."""
    return float(ops.convert_to_numpy(optimizer.learning_rate))
