"""A progress bar of optimizer steps with the last loss."""

from studio.trainers.run.callbacks.step_callback import StepCallback
from studio.trainers.run.training_tensorboard import STEP_LOSS_KEY


class TrainingProgressBar(StepCallback):
    """Shows steps done out of `total_steps` (tqdm), with the last loss.

    Args:
        total_steps: int, the run's length in steps (counting those done
            before a resume).
        initial_step: see `StepCallback`.
        gradient_accumulation_steps: see `StepCallback`.
        disable: True hides the bar; None hides it when not on a terminal.
    """

    def __init__(self, total_steps, initial_step=0, gradient_accumulation_steps=1, disable=None):
        super().__init__(initial_step, gradient_accumulation_steps)
        self.total_steps = total_steps
        self.disable = disable
        self.bar = None

    def on_train_begin(self, logs=None):
        from tqdm.auto import tqdm

        super().on_train_begin(logs)
        self.bar = tqdm(
            total=self.total_steps,
            initial=self.initial_step,
            desc="Training",
            unit="step",
            disable=self.disable,
            dynamic_ncols=True,
        )

    def on_step_end(self, step, logs):
        self.bar.update(step - self.bar.n)
        loss = logs.get(STEP_LOSS_KEY, logs.get("loss"))
        if loss is not None:
            self.bar.set_postfix(loss=f"{float(loss):.4f}", refresh=False)

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
