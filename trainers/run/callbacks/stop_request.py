"""Stops a training run cleanly when a stop file appears in its folder."""

import os

from studio.trainers.run.callbacks.step_callback import StepCallback


class StopRequest(StepCallback):
    """Ends `fit` after the current step once the file `path` exists (or on Ctrl-C).

    A process outside the run (the studio app's Stop button, a person
    typing `touch RUN/STOP`) asks for a stop by creating the file; the
    run then ends as at its last step: `TrainingRun` writes the final
    checkpoint, the results and the summary. Checking a file, not a
    signal, works the same for any process and on every platform. Within
    the run's own process, `interrupt` (an entered `InterruptStop`) turns
    the first Ctrl-C, or a notebook's stop button, into the same request.

    Args:
        path: the stop file.
        interrupt: None, or an `InterruptStop` whose `requested` also stops.
        initial_step: see `StepCallback`.
        gradient_accumulation_steps: see `StepCallback`.

    Attributes:
        stopped_step: the step after which the stop was seen, or None.
    """

    def __init__(self, path, initial_step=0, gradient_accumulation_steps=1, interrupt=None):
        super().__init__(initial_step, gradient_accumulation_steps)
        self.path = os.fspath(path)
        self.interrupt = interrupt
        self.stopped_step = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.stopped_step = None

    def on_step_end(self, step, logs):
        interrupted = self.interrupt is not None and self.interrupt.requested
        if interrupted or os.path.exists(self.path):
            self.stopped_step = step
            self.model.stop_training = True
