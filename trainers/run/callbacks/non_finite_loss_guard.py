"""Stops training when the loss stays NaN or infinite."""

import math

from studio.trainers.run.callbacks.step_callback import StepCallback
from studio.trainers.run.training_tensorboard import STEP_LOSS_KEY
from studio.trainers.run.positive_integer import check_positive_integer


class NonFiniteLossGuard(StepCallback):
    """Stops `fit` after `patience` consecutive batches with a non-finite loss.

    With loss scaling (`mixed_float16`) the optimizer skips such a step and
    lowers the scale, so a few in a row are expected; without it the step
    has already written NaN into the weights, and `patience=1` is right.
    The guard only stops `fit` and records where; the caller reports it
    (see `TrainingRun`).

    Args:
        patience: int >= 1, consecutive non-finite batches tolerated.
        initial_step: see `StepCallback`.
        gradient_accumulation_steps: see `StepCallback`.

    Attributes:
        failed_step: None, or the step (1-based, the update the batch
            belonged to) at which training was stopped.
        consecutive: non-finite batches in a row so far.
    """

    def __init__(self, patience=1, initial_step=0, gradient_accumulation_steps=1):
        super().__init__(initial_step, gradient_accumulation_steps)
        self.patience = check_positive_integer("patience", patience)
        self.failed_step = None
        self.consecutive = 0

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.failed_step = None
        self.consecutive = 0

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        loss = logs.get(STEP_LOSS_KEY, logs.get("loss"))
        # The update this batch belongs to, counted from 1.
        step = self.initial_step + self._batches // self.gradient_accumulation_steps + 1
        super().on_train_batch_end(batch, logs)
        if loss is None or math.isfinite(float(loss)):
            self.consecutive = 0
            return
        self.consecutive += 1
        if self.consecutive >= self.patience:
            self.failed_step = step
            self.model.stop_training = True
