"""Ctrl-C or a notebook's stop button during training leaves a run that `resume=True` finishes."""

import json
import os
import signal

import keras
import pytest

from studio.trainers.run.callbacks.step_callback import StepCallback
from studio.trainers.run.run_directory import RunDirectory
from studio.trainers.run.training_checkpoint import TrainingCheckpoint
from studio.trainers.run.training_run import STATUS_COMPLETED, STATUS_STOPPED, TrainingRun
from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer

TOTAL_STEPS = 5


class InterruptAt(StepCallback):
    """Sends this process SIGINT (what Ctrl-C and Jupyter's stop button do) after given steps."""

    def __init__(self, *steps):
        super().__init__()
        self.steps = steps

    def on_step_end(self, step, logs):
        if step in self.steps:
            os.kill(os.getpid(), signal.SIGINT)


def train(backbone, make_batches, options, token, path, resume=False, callbacks=()):
    trainer = TextualInversionTrainer(backbone, token, "cat", seed=1)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2), **options)
    run = RunDirectory(path)
    if not run.exists():
        run.create({"token": token})
    training = TrainingRun(trainer, run, TOTAL_STEPS, save_every=100, log_every=1)
    return training.fit(make_batches(backbone.tokenizer, token, seed=3), resume=resume,
                        callbacks=list(callbacks))


def test_the_first_interrupt_stops_after_the_step_with_a_checkpoint(
    tiny_backbone, make_batches, quick_compile_options, unique_token, tmp_path
):
    """As a STOP file does; test_stop_request.py resumes such a run to its end."""
    handler = signal.getsignal(signal.SIGINT)
    summary = train(tiny_backbone, make_batches, quick_compile_options, unique_token,
                    tmp_path / "run", callbacks=[InterruptAt(2)])
    # The run's own stop check comes before the test's callback: it sees the
    # interrupt after the next step, as one that came during that step.
    assert summary["status"] == STATUS_STOPPED and summary["steps"] == 3
    assert TrainingCheckpoint(tmp_path / "run" / "checkpoints").steps() == [3]
    assert os.path.isfile(tmp_path / "run" / "embedding.safetensors")
    assert signal.getsignal(signal.SIGINT) is handler


def test_a_second_interrupt_stops_at_once(
    tiny_backbone, make_batches, quick_compile_options, unique_token, tmp_path
):
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_backbone, make_batches, quick_compile_options, unique_token,
              tmp_path / "run", callbacks=[InterruptAt(1, 2)])
    assert signal.getsignal(signal.SIGINT) is handler
    assert not os.path.exists(tmp_path / "run" / "summary.json")


@pytest.mark.large  # about 15 s alone, 45 s on a busy 2-core machine
@pytest.mark.tensorflow_only
def test_a_keyboard_interrupt_inside_train_textual_inversion_leaves_a_run_that_resumes(
    tmp_path, monkeypatch, quick_compile_options, write_toy_images
):
    """A `KeyboardInterrupt` raised mid-fit (not by SIGINT) keeps the last periodic checkpoint.

    The folder's lock is released, so the same kernel can resume at once.
    """
    from studio.trainers import TextualInversionSettings, read_run_settings, train_textual_inversion
    from studio.trainers.run import training_run

    original_compile = TextualInversionTrainer.compile

    def eager_compile(self, optimizer="adam", **kwargs):
        kwargs.pop("jit_compile", None)
        original_compile(self, optimizer, **kwargs, **quick_compile_options)

    monkeypatch.setattr(TextualInversionTrainer, "compile", eager_compile)
    original_step_end = training_run.TrainingProgressBar.on_step_end

    def interrupted_at_step_3(self, step, logs):
        original_step_end(self, step, logs)
        if step == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(training_run.TrainingProgressBar, "on_step_end", interrupted_at_step_3)
    data = write_toy_images(tmp_path / "data", 2, 32)
    out = tmp_path / "run"
    settings = TextualInversionSettings(
        model="tiny-shapes", data=str(data), token="<toy>", init_word="square",
        steps=TOTAL_STEPS, save_every=2, log_every=1, latent_variants=0)
    with pytest.raises(KeyboardInterrupt):
        train_textual_inversion(settings, out)
    assert TrainingCheckpoint(out / "checkpoints").steps() == [2]
    assert not os.path.exists(out / "summary.json")

    monkeypatch.setattr(training_run.TrainingProgressBar, "on_step_end", original_step_end)
    summary = train_textual_inversion(read_run_settings(out), out, resume=True)
    assert summary["status"] == STATUS_COMPLETED and summary["steps"] == TOTAL_STEPS
    assert summary["resumed_from_step"] == 2
    assert json.loads((out / "summary.json").read_text())["steps"] == TOTAL_STEPS
    assert os.path.isfile(out / "embedding.safetensors")
