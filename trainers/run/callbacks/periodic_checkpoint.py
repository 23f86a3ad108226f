"""Saves a checkpoint of the training state every N steps."""

import logging

import numpy as np

from studio.trainers.run.callbacks.step_callback import StepCallback
from studio.trainers.run.positive_integer import check_positive_integer

logger = logging.getLogger(__name__)


class PeriodicCheckpoint(StepCallback):
    """Writes a `TrainingCheckpoint` every `save_every` steps.

    A state with non-finite trainable values (a step that went wrong
    without loss scaling) is never saved: the previous checkpoint stays the
    last good one.

    Args:
        checkpoint: a `TrainingCheckpoint`.
        save_every: int >= 1, steps between checkpoints.
        artifacts: None or a callable `(folder, step)` writing result files
            into each checkpoint (e.g. the embedding at that step).
        initial_step: see `StepCallback`.
        gradient_accumulation_steps: see `StepCallback`.

    Attributes:
        last_saved_step: the step of the last checkpoint this callback wrote
            (or `initial_step` before any).
    """

    def __init__(
        self,
        checkpoint,
        save_every,
        artifacts=None,
        initial_step=0,
        gradient_accumulation_steps=1,
    ):
        super().__init__(initial_step, gradient_accumulation_steps)
        self.checkpoint = checkpoint
        self.save_every = check_positive_integer("save_every", save_every)
        self.artifacts = artifacts
        self.last_saved_step = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.last_saved_step = self.initial_step

    def on_step_end(self, step, logs):
        if step % self.save_every == 0:
            self.save(step)

    def save(self, step):
        """Saves the model's state at `step` now; returns the folder or None if not finite."""
        self.sync_model_state()
        bad = [
            variable.path
            for variable in self.model.trainable_variables
            if not np.all(np.isfinite(variable.numpy()))
        ]
        if bad:
            logger.warning(
                "Not saving a checkpoint at step %d: %s hold non-finite values.", step, bad
            )
            return None
        artifacts = None
        if self.artifacts is not None:
            def artifacts(folder):
                self.artifacts(folder, step)
        folder = self.checkpoint.save(self.model, step, artifacts=artifacts)
        self.last_saved_step = step
        return folder
