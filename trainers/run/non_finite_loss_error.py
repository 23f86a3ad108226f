"""The error a training run raises when its loss stays NaN or infinite."""

from studio.errors import StudioError


class NonFiniteLossError(StudioError, RuntimeError):
    """Training stopped because the loss was not finite for too many steps in a row.

    Args:
        step: the step at which training was stopped.
        checkpoint: the folder of the last good checkpoint, or None.
        consecutive: how many batches in a row had a non-finite loss.
    """

    def __init__(self, step, checkpoint, consecutive):
        self.step = step
        self.checkpoint = checkpoint
        self.consecutive = consecutive
        where = (
            f"The last good checkpoint is {checkpoint}; resume from it with a lower "
            "learning rate, or check the training images."
            if checkpoint
            else "No checkpoint was written before it; lower the learning rate, or "
            "check the training images."
        )
        super().__init__(
            f"Training stopped at step {step}: the loss was NaN or infinite for "
            f"{consecutive} batch(es) in a row. {where}"
        )
