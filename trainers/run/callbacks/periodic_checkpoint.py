"""Saves a checkpoint of the training state every N steps."""

import logging

from studio.trainers.run.callbacks.step_callback import StepCallback
from studio.trainers.run.positive_integer import check_positive_integer
from studio.trainers.run.training_state_check import describe_variables, unusable_variables

logger = logging.getLogger(__name__)


class PeriodicCheckpoint(StepCallback):
    """Writes a `TrainingCheckpoint` every `save_every` steps.

    Only usable states are saved, so that every checkpoint is one to
    resume from: one with NaN or infinite values, or trained weights beyond
    float16's range (`unusable_variables`), is not saved, and training
    stops, as the run has diverged (see `diverged_step`). Under loss
    scaling, where skipped steps leave NaN out of the weights, this is what
    tells a diverged run (weights that overflow in float16, so that every
    loss is NaN) from a few bad batches.

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
        diverged_step: None, or the step whose state was unusable.
        diverged_variables: the paths of its unusable variables.
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
        self.diverged_step = None
        self.diverged_variables = []

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.last_saved_step = self.initial_step
        self.diverged_step = None
        self.diverged_variables = []

    def on_step_end(self, step, logs):
        if step % self.save_every:
            return
        if self.save(step) is None:
            self.model.stop_training = True

    def save(self, step):
        """Saves the model's state at `step` now; returns the folder, or None if unusable.

        An unusable state (see `unusable_variables`) is not saved; it is
        recorded in `diverged_step` and `diverged_variables`.
        """
        self.sync_model_state()
        bad = unusable_variables(self.model)
        if bad:
            self.diverged_step = step
            self.diverged_variables = bad
            logger.warning(
                "Not saving a checkpoint at step %d: the training state diverged, "
                "NaN, infinite or beyond float16's range in %s.",
                step, describe_variables(bad),
            )
            return None
        folder = self.checkpoint.save(self.model, step, artifacts=self._step_artifacts(step))
        self.last_saved_step = step
        return folder

    def _step_artifacts(self, step):
        """`artifacts` bound to `step`, as the checkpoint calls it (or None)."""
        if self.artifacts is None:
            return None
        return lambda folder: self.artifacts(folder, step)
