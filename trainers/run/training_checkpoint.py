"""Checkpoints of a training run: what `--resume` needs to continue exactly."""

import contextlib
import os
import re
import shutil

import numpy as np

from studio.files.atomic_write import atomic_file, atomic_folder
from studio.files.json_file import read_json, write_json
from studio.trainers.run.positive_integer import check_positive_integer

STATE_FILE = "training_state.npz"
INFO_FILE = "checkpoint.json"
# Checkpoint folders are named after the step, zero-padded so they sort.
FOLDER_PATTERN = re.compile(r"step-(\d+)")
STEP_DIGITS = 6
# Keras names every SeedGenerator's state variable so.
SEED_STATE_NAME = "seed_generator_state"


def training_state_variables(model):
    """The variables that define where a compiled model's training is.

    The trainable variables, the optimizer's variables (moments, step
    count, loss scale, gradient accumulators) and the state of every
    `keras.random.SeedGenerator` the model tracks (so noise draws continue
    where they stopped), then the model's `training_state_extras` if it has
    any (non-trainable variables its steps write). Frozen weights are not part of it: they never
    change.
    """
    if model.optimizer is None:
        raise ValueError(
            "The model must be compiled (with its optimizer) before its training "
            f"state can be saved or restored. Received: {model.name} with no optimizer"
        )
    if not model.optimizer.built:
        # Under `tf.distribute` the optimizer's variables are made in the
        # model's strategy's scope, mirrored like the weights.
        strategy = getattr(model, "distribute_strategy", None)
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            model.optimizer.build(model.trainable_variables)
    seed_states = [v for v in model.non_trainable_variables if v.name == SEED_STATE_NAME]
    # Other state a trainer changes as it trains (pivotal tuning's held vectors).
    extra = list(getattr(model, "training_state_extras", ()))
    return list(model.trainable_variables) + list(model.optimizer.variables) + seed_states + extra


class TrainingCheckpoint:
    """Saves and restores a model's training state, one folder per step.

    A checkpoint is a folder `step-NNNNNN/` holding `training_state.npz`
    (see `training_state_variables`), `checkpoint.json` (the step and
    whatever the caller adds) and any result files the caller writes
    (`artifacts`, such as the embedding at that step). It is built under a
    temporary name and renamed into place, so a crash never leaves a
    half-written checkpoint: `latest()` only sees whole ones.

    Variables are matched by order and shape (names differ between
    processes, e.g. "adam" and "adam_1"), so the model must be built the
    same way as the one that was saved.

    Args:
        directory: the folder holding the checkpoints.
        keep: int or None. How many of the newest checkpoints to keep;
            None keeps all.

    Example:

    ```python
    checkpoints = TrainingCheckpoint("runs/cat/checkpoints", keep=3)
    checkpoints.save(trainer, step=500, artifacts=lambda folder: ...)
    info = checkpoints.restore(trainer)  # from the latest; info["step"] == 500
    ```
    """

    def __init__(self, directory, keep=None):
        if keep is not None:
            check_positive_integer("keep", keep)
        self.directory = os.fspath(directory)
        self.keep = keep

    def folder(self, step):
        """The folder of the checkpoint at `step`."""
        return os.path.join(self.directory, f"step-{step:0{STEP_DIGITS}d}")

    def steps(self):
        """Steps of the complete checkpoints, ascending."""
        if not os.path.isdir(self.directory):
            return []
        steps = []
        for name in os.listdir(self.directory):
            match = FOLDER_PATTERN.fullmatch(name)
            if match and os.path.isfile(os.path.join(self.directory, name, INFO_FILE)):
                steps.append(int(match.group(1)))
        return sorted(steps)

    def latest(self):
        """The folder of the newest complete checkpoint, or None."""
        steps = self.steps()
        return self.folder(steps[-1]) if steps else None

    def save(self, model, step, artifacts=None, info=None):
        """Writes the checkpoint of `model` at `step` and returns its folder.

        Args:
            model: a compiled `keras.Model`.
            step: int, optimizer updates done.
            artifacts: None, or a callable taking the (temporary) folder and
                writing result files into it.
            info: dict of JSON-serialisable values stored in
                `checkpoint.json` beside the step.

        Returns:
            The checkpoint's folder.
        """
        variables = training_state_variables(model)
        target = self.folder(step)
        # A resumed run reaching a step saved before: the new one wins.
        with atomic_folder(target, overwrite=True) as staging:
            with atomic_file(os.path.join(staging, STATE_FILE)) as file:
                np.savez(file, *[np.asarray(variable.numpy()) for variable in variables])
            if artifacts is not None:
                artifacts(staging)
            record = {
                **(info or {}),
                "step": int(step),
                "variables": [[v.path, list(v.shape)] for v in variables],
            }
            write_json(os.path.join(staging, INFO_FILE), record)
        self._prune()
        return target

    def read_info(self, folder=None):
        """The `checkpoint.json` of `folder` (default: the latest checkpoint)."""
        return read_json(os.path.join(self._existing(folder), INFO_FILE))

    def restore(self, model, folder=None):
        """Loads a checkpoint's training state into `model`.

        Args:
            model: a compiled `keras.Model` built like the saved one.
            folder: a checkpoint folder; None means the latest.

        Returns:
            The checkpoint's info dict (with `"step"`).

        Raises:
            FileNotFoundError: there is no checkpoint.
            ValueError: the model's training state has other variables than
                the checkpoint's (count or shapes).
        """
        folder = self._existing(folder)
        info = self.read_info(folder)
        variables = training_state_variables(model)
        with np.load(os.path.join(folder, STATE_FILE), allow_pickle=False) as stored:
            values = [stored[f"arr_{index}"] for index in range(len(stored.files))]
        saved = [tuple(value.shape) for value in values]
        wanted = [tuple(variable.shape) for variable in variables]
        if saved != wanted:
            raise ValueError(
                "The checkpoint does not fit this model: its training state has other "
                f"variables. Expected shapes {wanted}. Received: {saved} in {folder}"
            )
        for variable, value in zip(variables, values):
            variable.assign(value)
        return info

    def _existing(self, folder):
        folder = folder or self.latest()
        if folder is None or not os.path.isfile(os.path.join(folder, INFO_FILE)):
            raise FileNotFoundError(
                f"There is no complete checkpoint to restore. Received: "
                f"{folder or self.directory}"
            )
        return folder

    def _prune(self):
        if self.keep is None:
            return
        for step in self.steps()[: -self.keep]:
            shutil.rmtree(self.folder(step), ignore_errors=True)
