"""Appends each step's loss and time to a file that other processes read."""

import os
import time

from studio.trainers.run.callbacks.step_callback import StepCallback
from studio.trainers.run.run_directory import progress_line
from studio.trainers.run.training_tensorboard import STEP_LOSS_KEY


class ProgressFile(StepCallback):
    """Writes one JSON line per optimizer step: `{"step", "loss", "time"}`.

    TensorBoard's event files are flushed in batches, so a page watching a
    run live reads this file instead: the last line is where training is,
    the lines are its loss curve. Lines are appended and flushed one by
    one, so a reader sees whole lines (it may skip a half-written last
    one). A resumed run appends after the lines up to its checkpoint
    (`RunDirectory.restart_progress` drops the others first).

    Each line also holds `elapsed`, the run's training seconds so far
    (`elapsed_before` plus this session's), so that the time of a session
    killed before its summary is not lost.

    Args:
        path: the file (JSON lines), created if missing.
        initial_step: see `StepCallback`.
        gradient_accumulation_steps: see `StepCallback`.
        elapsed_before: training seconds of the run's earlier sessions.
    """

    def __init__(self, path, initial_step=0, gradient_accumulation_steps=1, elapsed_before=0.0):
        super().__init__(initial_step, gradient_accumulation_steps)
        self.path = os.fspath(path)
        self.elapsed_before = elapsed_before
        self._file = None
        self._start = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._start = time.perf_counter()
        self._file = open(self.path, "a", encoding="utf-8")

    def on_step_end(self, step, logs):
        loss = logs.get(STEP_LOSS_KEY, logs.get("loss"))
        elapsed = self.elapsed_before + time.perf_counter() - self._start
        self._file.write(progress_line(step, loss, time.time(), elapsed))
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None
