"""The error a training run raises when its loss or its weights stop being finite."""

from studio.errors import StudioError


class NonFiniteLossError(StudioError, RuntimeError):
    """Training stopped because it diverged: non-finite losses, or unusable weights.

    Either the loss was NaN or infinite for too many batches in a row, or
    the trained weights (or the optimizer's state) hold NaN or infinite
    values, or values beyond float16's range, in which results are loaded
    (see `studio.trainers.run.training_state_check`).

    Args:
        step: the step at which training was stopped.
        checkpoint: the folder of the last good checkpoint, or None.
        consecutive: how many batches in a row had a non-finite loss.
        variables: the paths of the unusable variables, when the weights
            (not the loss) stopped the run; empty otherwise.
    """

    def __init__(self, step, checkpoint, consecutive, variables=()):
        from studio.trainers.run.training_state_check import describe_variables

        self.step = step
        self.checkpoint = checkpoint
        self.consecutive = consecutive
        self.variables = list(variables)
        where = (
            f"The last good checkpoint is {checkpoint}; resume from it with a lower "
            "learning rate, or check the training images."
            if checkpoint
            else "No good checkpoint was written before it; lower the learning rate, or "
            "check the training images."
        )
        if self.variables:
            what = (
                "the training state diverged: NaN, infinite or beyond float16's range "
                f"(where results are loaded) in {describe_variables(self.variables)}."
            )
        else:
            what = f"the loss was NaN or infinite for {consecutive} batch(es) in a row."
        super().__init__(f"Training stopped at step {step}: {what} {where}")
