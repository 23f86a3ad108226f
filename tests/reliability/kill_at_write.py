"""Runs `studio ...` and kills itself (SIGKILL) in the middle of the k-th write of one kind.

Usage: python kill_at_write.py WRITE_POINT K STUDIO_ARGS...

WRITE_POINT is what is being written when the process dies:

* `checkpoint`: a checkpoint folder, filled but not yet renamed into place;
* `embedding`, `lora`, `summary`, `sample`: that file, written to its
  temporary name but not renamed (an embedding or LoRA is written into
  every checkpoint and the run folder);
* `progress`: a line of `progress.jsonl`, half written.

The process exits with the `studio` command's code if the k-th write never
comes (the test then fails: the hook did not fire).
"""

import contextlib
import fnmatch
import os
import signal
import sys

# Names of the files each write point writes (fnmatch patterns).
FILE_POINTS = {
    "embedding": "embedding.safetensors",
    "lora": "lora.safetensors",
    "summary": "summary.json",
    "sample": "step-*.png",
}


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def run_eagerly():
    """Trainers compile to eager steps: the tiny model's steps take less than tracing.

    The test process does the same (`eager_trainers`), so that the killed,
    the resumed and the uninterrupted runs compute alike. The samples'
    sampling loop runs eagerly too (tracing it costs more than its 2 steps).
    """
    import tensorflow as tf

    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer

    tf.config.run_functions_eagerly(True)
    from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer

    for trainer_class in (TextualInversionTrainer, DreamBoothTrainer):
        original = trainer_class.compile

        def compile(self, optimizer="adam", _original=original, **kwargs):
            kwargs.pop("jit_compile", None)
            _original(self, optimizer, run_eagerly=True, jit_compile=False, **kwargs)

        trainer_class.compile = compile


def install(point, k):
    calls = []

    def kth():
        calls.append(1)
        return len(calls) == k

    if point in FILE_POINTS:
        from studio.files import atomic_write

        replacing = atomic_write._replacing

        @contextlib.contextmanager
        def hooked(path, suffix):
            with replacing(path, suffix) as temporary:
                yield temporary
                if fnmatch.fnmatch(os.path.basename(os.fspath(path)), FILE_POINTS[point]) and kth():
                    die()  # The temporary is written; the rename never happens.

        atomic_write._replacing = hooked
    elif point == "checkpoint":
        from studio.trainers.run import training_checkpoint

        folder = training_checkpoint.atomic_folder

        @contextlib.contextmanager
        def hooked(path, overwrite=False):
            with folder(path, overwrite=overwrite) as staging:
                yield staging
                if kth():
                    die()

        training_checkpoint.atomic_folder = hooked
    elif point == "progress":
        from studio.trainers.run.progress_file import ProgressFile

        def on_step_end(self, step, logs):
            if kth():
                self._file.write(f'{{"step": {step}, "lo')
                self._file.flush()
                die()
            original(self, step, logs)

        original = ProgressFile.on_step_end
        ProgressFile.on_step_end = on_step_end
    else:
        raise SystemExit(f"unknown write point {point!r}")


if __name__ == "__main__":
    point, k, *argv = sys.argv[1:]
    run_eagerly()
    install(point, int(k))
    from studio.cli.main import main

    sys.exit(main(argv))
