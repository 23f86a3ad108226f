"""The folder one training run writes: config, checkpoints, logs, samples, results."""

import json
import os

from studio.files.atomic_write import write_file_atomically

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
CHECKPOINTS_FOLDER = "checkpoints"
LOGS_FOLDER = "logs"
SAMPLES_FOLDER = "samples"
# Created by anyone who wants the run to stop after its current step.
STOP_FILE = "STOP"
# One JSON line per step (step, loss, time), for watching a run live.
PROGRESS_FILE = "progress.jsonl"


class RunDirectory:
    """Where a training run keeps everything, laid out the same for every trainer.

    ```
    RUN_DIR/
      config.json       what was asked for (the command's settings)
      checkpoints/      step-000500/ ... (see `TrainingCheckpoint`)
      logs/             TensorBoard event files
      samples/          sample images, step-000500-0.png ...
      summary.json      steps, time, final loss, device, precision
      progress.jsonl    one line per step: step, loss, time
      STOP              (only when asked) stop after the current step
      <results>         e.g. embedding.safetensors
    ```

    JSON files are written atomically (temporary file, then rename), so a
    crash leaves the previous version or the new one, never half a file.

    Args:
        path: the run's folder (created by `create`).

    Example:

    ```python
    run = RunDirectory("runs/cat-toy")
    run.create({"token": "<cat-toy>", "steps": 2000})
    run.write_summary({"steps": 2000, "final_loss": 0.12})
    ```
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    @property
    def config_path(self):
        return os.path.join(self.path, CONFIG_FILE)

    @property
    def summary_path(self):
        return os.path.join(self.path, SUMMARY_FILE)

    @property
    def checkpoints_path(self):
        return os.path.join(self.path, CHECKPOINTS_FOLDER)

    @property
    def logs_path(self):
        return os.path.join(self.path, LOGS_FOLDER)

    @property
    def samples_path(self):
        return os.path.join(self.path, SAMPLES_FOLDER)

    @property
    def stop_path(self):
        return os.path.join(self.path, STOP_FILE)

    @property
    def progress_path(self):
        return os.path.join(self.path, PROGRESS_FILE)

    def request_stop(self):
        """Asks the run's training process to stop after its current step.

        It then writes a final checkpoint, its results and the summary
        (status "stopped: by request"), and `--resume` continues it.
        """
        with open(self.stop_path, "w", encoding="utf-8") as file:
            file.write("stop\n")

    def file(self, name):
        """The path of a result file in the run's folder."""
        return os.path.join(self.path, name)

    def exists(self):
        """True when the folder holds a run (it has a config)."""
        return os.path.isfile(self.config_path)

    def create(self, config):
        """Makes the folder and its sub-folders and writes `config`.

        Args:
            config: JSON-serialisable dict of the run's settings.

        Raises:
            FileExistsError: the folder already holds a run; resume it, or
                choose another folder.
        """
        if self.exists():
            raise FileExistsError(
                f"{self.path} already holds a training run ({CONFIG_FILE} exists). "
                "Resume it, or choose another output folder. "
                f"Received: {self.path}"
            )
        for folder in (self.path, self.checkpoints_path, self.logs_path, self.samples_path):
            os.makedirs(folder, exist_ok=True)
        self.write_config(config)

    def write_config(self, config):
        _write_json(self.config_path, config)

    def read_config(self):
        """The run's settings.

        Raises:
            FileNotFoundError: the folder holds no run.
        """
        if not self.exists():
            raise FileNotFoundError(
                f"{self.path} holds no training run to resume: there is no {CONFIG_FILE}. "
                f"Received: {self.path}"
            )
        return _read_json(self.config_path)

    def write_summary(self, summary):
        _write_json(self.summary_path, summary)

    def read_summary(self):
        """The summary of the last completed (or stopped) session, or None."""
        if not os.path.isfile(self.summary_path):
            return None
        return _read_json(self.summary_path)


def _write_json(path, data):
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    write_file_atomically(path, text.encode("utf-8"))


def _read_json(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)
