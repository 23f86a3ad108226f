"""A stop file ends a run cleanly: final checkpoint, results, summary, progress lines."""

import json
import os

import keras

from studio.trainers.run.run_directory import RunDirectory
from studio.trainers.run.callbacks.step_callback import StepCallback
from studio.trainers.textual_inversion.textual_inversion_trainer import EMBEDDING_FILE, TextualInversionTrainer
from studio.trainers.run.training_checkpoint import TrainingCheckpoint
from studio.trainers.run.training_run import STATUS_COMPLETED, STATUS_STOPPED, TrainingRun

TOTAL_STEPS = 6
STOP_AFTER_STEP = 2
# The test's callback runs after the run's own ones, so the file written at
# STOP_AFTER_STEP is seen at the next step, as one written by another
# process between two checks.
STOPPED_STEP = STOP_AFTER_STEP + 1


class StopAt(StepCallback):
    """Asks for a stop, as another process would, after `step`."""

    def __init__(self, run_directory, step):
        super().__init__()
        self.run_directory = run_directory
        self.at = step

    def on_step_end(self, step, logs):
        if step == self.at:
            self.run_directory.request_stop()


def train(backbone, make_batches, options, token, path, resume=False, callbacks=()):
    trainer = TextualInversionTrainer(backbone, token, "cat", seed=1)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2), **options)
    run = RunDirectory(path)
    if not run.exists():
        run.create({"token": token})
    training = TrainingRun(trainer, run, TOTAL_STEPS, save_every=100, log_every=1)
    summary = training.fit(
        make_batches(backbone.tokenizer, token, seed=3), resume=resume, callbacks=list(callbacks)
    )
    return run, summary


def progress_steps(run):
    with open(run.progress_path, encoding="utf-8") as file:
        return [json.loads(line)["step"] for line in file]


def test_stop_file_ends_run_with_final_checkpoint_and_resume_finishes_it(
    tiny_backbone, make_batches, quick_compile_options, unique_token, tmp_path
):
    path = tmp_path / "run"
    os.makedirs(path)
    run = RunDirectory(path)
    stopper = StopAt(run, STOP_AFTER_STEP)
    run, summary = train(
        tiny_backbone, make_batches, quick_compile_options, unique_token, path,
        callbacks=[stopper],
    )
    assert summary["status"] == STATUS_STOPPED
    assert summary["steps"] == STOPPED_STEP
    assert TrainingCheckpoint(run.checkpoints_path).steps() == [STOPPED_STEP]
    assert os.path.isfile(run.file(EMBEDDING_FILE))
    assert not os.path.exists(run.stop_path)  # answered, so a resume runs on
    assert progress_steps(run) == list(range(1, STOPPED_STEP + 1))

    run, summary = train(
        tiny_backbone, make_batches, quick_compile_options, unique_token, path, resume=True
    )
    assert summary["status"] == STATUS_COMPLETED
    assert summary["steps"] == TOTAL_STEPS
    assert progress_steps(run) == list(range(1, TOTAL_STEPS + 1))


def test_stop_file_present_before_training_stops_after_first_step(
    tiny_backbone, make_batches, quick_compile_options, unique_token, tmp_path
):
    path = tmp_path / "run"
    os.makedirs(path)
    RunDirectory(path).request_stop()  # e.g. Stop pressed while the model loaded
    run, summary = train(tiny_backbone, make_batches, quick_compile_options, unique_token, path)
    assert summary["status"] == STATUS_STOPPED
    assert summary["steps"] == 1
