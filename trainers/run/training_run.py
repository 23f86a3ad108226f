"""Runs `fit` for a trainer inside a run directory: checkpoints, logs, samples, resume."""

import itertools
import logging
import os
import time

import keras

from studio.trainers.run.non_finite_loss_error import NonFiniteLossError
from studio.trainers.run.callbacks.non_finite_loss_guard import NonFiniteLossGuard
from studio.trainers.run.callbacks.periodic_checkpoint import PeriodicCheckpoint
from studio.trainers.run.progress_file import ProgressFile
from studio.trainers.run.gradient_accumulation import gradient_accumulation_steps
# The statuses are also imported from here (`training_run.STATUS_COMPLETED`).
from studio.trainers.run.run_directory import STATUS_COMPLETED
from studio.trainers.run.run_directory import STATUS_NON_FINITE
from studio.trainers.run.run_directory import STATUS_OUT_OF_DATA
from studio.trainers.run.run_directory import STATUS_STOPPED
from studio.trainers.run.run_directory import RunDirectory
from studio.trainers.run.callbacks.sample_images import SampleImages
from studio.trainers.run.callbacks.stop_request import StopRequest
from studio.trainers.run.interrupt_stop import InterruptStop
from studio.trainers.run.training_progress_bar import TrainingProgressBar
from studio.trainers.run.training_tensorboard import STEP_LOSS_KEY, TrainingTensorBoard
from studio.trainers.run.positive_integer import check_positive_integer

logger = logging.getLogger(__name__)


class TrainingRun:
    """Trains a compiled trainer for `steps` optimizer updates inside a `RunDirectory`.

    Works with any trainer that is a compiled `keras.Model` (its own
    `train_step` or Keras' default) and offers
    `save_results(folder, step)`, which writes its result files (the
    textual-inversion embedding, DreamBooth weights); optionally
    `log_scalars()` (a dict of extra TensorBoard scalars) and `precision`.

    `fit` adds the callbacks: checkpoint every `save_every` steps (result
    files included), TensorBoard logs, samples every `sample_every` steps, a
    progress bar, a guard against non-finite losses, a progress file
    (`progress.jsonl`) and a stop request: once a `STOP` file appears in
    the run folder (`RunDirectory.request_stop`), the run ends after the
    current step as if it were the last (final checkpoint, results,
    summary with status "stopped: by request") and the file is removed;
    so does the first Ctrl-C (a notebook's stop button) during `fit`
    (`InterruptStop`; a second one interrupts at once).
    With `resume=True` it restores the latest checkpoint (weights,
    optimizer state, random state, step) and skips the batches already
    used, so the run ends as an uninterrupted one with the same seed would;
    `progress.jsonl` loses the lines past the checkpoint (a killed session
    trained them), and the summary's `total_seconds` counts that session's
    time too. At the end it writes the result files into the run folder
    and `summary.json`.

    A run has diverged, and stops with `NonFiniteLossError`, when its loss
    stays non-finite (see `max_non_finite_steps`) or when its state is
    unusable at a checkpoint or at the end: NaN or infinite values, or
    trained weights beyond float16's range (`unusable_variables`). Such a
    state is never saved, neither as a checkpoint nor as a result.

    Callers that may run concurrently hold the folder's lock
    (`RunDirectory.lock`) around the run, as `train_textual_inversion`
    and `train_dreambooth` do.

    Args:
        trainer: a compiled `keras.Model` as above.
        run_directory: a `RunDirectory` or its path (created by the caller).
        steps: int, optimizer updates in the whole run (a resumed run
            continues up to it).
        save_every: int or None; checkpoint interval in steps. None: only
            the final checkpoint.
        log_every: int, TensorBoard interval in steps.
        sampler: None or a callable returning a
            `studio.pipelines.GeneratedImages` (fixed prompts and seeds).
        sample_every: int or None; sampling interval in steps (needs
            `sampler`). The final step is always sampled when set.
        keep_checkpoints: int or None; how many checkpoints to keep.
        max_non_finite_steps: int; consecutive non-finite losses tolerated
            under loss scaling (which skips those steps). Without loss
            scaling the first one stops training, as it has already
            reached the weights.

    Raises:
        ValueError: for a bad interval or step count.
    """

    def __init__(
        self,
        trainer,
        run_directory,
        steps,
        save_every=None,
        log_every=10,
        sampler=None,
        sample_every=None,
        keep_checkpoints=None,
        max_non_finite_steps=10,
    ):
        for name, value in (("steps", steps), ("log_every", log_every),
                            ("max_non_finite_steps", max_non_finite_steps)):
            check_positive_integer(name, value)
        for name, value in (("save_every", save_every), ("sample_every", sample_every)):
            if value is not None:
                check_positive_integer(name, value)
        if sample_every is not None and sampler is None:
            raise ValueError(
                "`sample_every` needs a `sampler` that generates the images. "
                f"Received: sample_every={sample_every}, sampler=None"
            )
        if not isinstance(run_directory, RunDirectory):
            run_directory = RunDirectory(run_directory)
        self.trainer = trainer
        self.run_directory = run_directory
        self.steps = steps
        self.save_every = save_every
        self.log_every = log_every
        self.sampler = sampler
        self.sample_every = sample_every
        self.keep_checkpoints = keep_checkpoints
        self.max_non_finite_steps = max_non_finite_steps
        self.checkpoint = run_directory.checkpoints(keep=keep_checkpoints)

    @property
    def gradient_accumulation_steps(self):
        """Batches per optimizer update, from the trainer's optimizer."""
        return gradient_accumulation_steps(self.trainer.optimizer)

    @property
    def uses_loss_scaling(self):
        return isinstance(self.trainer.optimizer, keras.optimizers.LossScaleOptimizer)

    def fit(self, batches, resume=False, callbacks=None):
        """Trains up to `steps` and returns the summary (also in `summary.json`).

        Args:
            batches: the training data from its first batch: a
                `tf.data.Dataset` or an iterable of batches (a new
                iterator, not one partly consumed), long enough for the
                run (repeat it).
            resume: True continues from the latest checkpoint, if any.
            callbacks: more Keras callbacks for `fit`.

        Returns:
            The summary dict.

        Raises:
            NonFiniteLossError: the loss stayed non-finite; the summary and
                the last good checkpoint are kept.
        """
        accumulation = self.gradient_accumulation_steps
        initial_step = 0
        if resume:
            if self.checkpoint.latest() is None:
                logger.warning("No checkpoint in %s: starting from step 0.",
                               self.checkpoint.directory)
            else:
                initial_step = int(self.checkpoint.restore(self.trainer)["step"])
        previous = (self.run_directory.read_summary() or {}) if resume else {}
        # A session killed after the summary's trained on: its time is in
        # the progress file, whose steps past the checkpoint are dropped.
        recorded = self.run_directory.restart_progress(initial_step) if resume else 0.0
        elapsed_before = max(previous.get("total_seconds") or 0.0, recorded)

        counting = dict(initial_step=initial_step, gradient_accumulation_steps=accumulation)
        guard = NonFiniteLossGuard(
            self.max_non_finite_steps if self.uses_loss_scaling else 1, **counting
        )
        saver = PeriodicCheckpoint(
            self.checkpoint, self.save_every or self.steps, self.trainer.save_results, **counting
        )
        tensorboard = TrainingTensorBoard(
            self.run_directory.logs_path,
            self.log_every,
            scalars=getattr(self.trainer, "log_scalars", None),
            **counting,
        )
        interrupt = InterruptStop()
        stop = StopRequest(self.run_directory.stop_path, interrupt=interrupt, **counting)
        progress = ProgressFile(
            self.run_directory.progress_path, elapsed_before=elapsed_before, **counting
        )
        all_callbacks = [guard, saver, tensorboard, progress, stop]
        sampling = None
        if self.sample_every is not None:
            sampling = SampleImages(
                self.sampler, self.run_directory.samples_path, self.sample_every,
                tensorboard=tensorboard, **counting,
            )
            all_callbacks.append(sampling)
        all_callbacks.append(TrainingProgressBar(self.steps, **counting))
        all_callbacks.extend(callbacks or [])

        start = time.perf_counter()
        history = None
        remaining = self.steps - initial_step
        if remaining > 0:
            with interrupt:
                history = self.trainer.fit(
                    _skip(batches, initial_step * accumulation),
                    epochs=1,
                    steps_per_epoch=remaining * accumulation,
                    callbacks=all_callbacks,
                    shuffle=False,
                    verbose=0,
                )
        seconds = time.perf_counter() - start
        steps_done = saver.step if remaining > 0 else initial_step

        status = STATUS_COMPLETED
        if guard.failed_step is not None or saver.diverged_step is not None:
            status = STATUS_NON_FINITE
        elif stop.stopped_step is not None and steps_done < self.steps:
            status = STATUS_STOPPED
        elif steps_done < self.steps:
            status = STATUS_OUT_OF_DATA
        if status != STATUS_NON_FINITE and remaining > 0:
            # The last checkpoint also checks that the final state is usable.
            if saver.last_saved_step != steps_done and saver.save(steps_done) is None:
                status = STATUS_NON_FINITE
        if status != STATUS_NON_FINITE:
            if remaining > 0 and sampling is not None and sampling.last_sampled_step != steps_done:
                sampling.sample(steps_done)
            self.trainer.save_results(self.run_directory.path, steps_done)
        tensorboard.close()

        summary = self._summary(
            history, initial_step, steps_done, seconds, previous, status, elapsed_before
        )
        self.run_directory.write_summary(summary)
        if stop.stopped_step is not None and os.path.exists(self.run_directory.stop_path):
            # Answered: a later `--resume` must not stop at once.
            os.remove(self.run_directory.stop_path)
        if status == STATUS_NON_FINITE:
            if guard.failed_step is not None:
                raise NonFiniteLossError(
                    guard.failed_step, self.checkpoint.latest(), guard.consecutive
                )
            raise NonFiniteLossError(
                saver.diverged_step, self.checkpoint.latest(), 0, saver.diverged_variables
            )
        if status == STATUS_OUT_OF_DATA:
            logger.warning("The data ran out after %d of %d steps.", steps_done, self.steps)
        return summary

    def _summary(
        self, history, initial_step, steps_done, seconds, previous, status, elapsed_before
    ):
        logs = history.history if history is not None else {}
        losses = logs.get(STEP_LOSS_KEY) or logs.get("loss") or [None]
        trained = steps_done - initial_step
        final_loss = losses[-1] if trained else previous.get("final_loss")
        return {
            "status": status,
            "steps": steps_done,
            "target_steps": self.steps,
            "resumed_from_step": initial_step if initial_step else None,
            "seconds": round(seconds, 3),
            "total_seconds": round(elapsed_before + seconds, 3),
            "steps_per_second": round(trained / seconds, 4) if trained and seconds else None,
            "final_loss": None if final_loss is None else float(final_loss),
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "precision": getattr(self.trainer, "precision", self.trainer.dtype_policy.name),
            "weights_dtype": getattr(
                self.trainer, "weights_dtype", self.trainer.dtype_policy.variable_dtype
            ),
            "loss_scaling": self.uses_loss_scaling,
            "backend": keras.config.backend(),
            "device": describe_device(),
            "last_checkpoint": self.checkpoint.latest(),
        }


def describe_device():
    """The accelerator training ran on, in words ("cpu", "gpu: NVIDIA H100 ...")."""
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}: {device.device_kind}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"gpu: {details.get('device_name', gpus[0].name)}"
    return "cpu"


def _skip(batches, count):
    """`batches` without its first `count` batches (used before a resume)."""
    if hasattr(batches, "skip"):  # tf.data.Dataset
        return batches.skip(count) if count else batches

    # `fit` takes Python generators (not any iterator) of tuples.
    def remaining():
        for batch in itertools.islice(iter(batches), count, None):
            yield batch if isinstance(batch, tuple) else (batch,)

    return remaining()
