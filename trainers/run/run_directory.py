"""The folder one training run writes: config, checkpoints, logs, samples, results.

The one place that knows the run folder's layout: the trainers write it
through `RunDirectory`, the app and the commands read it through
`RunDirectory`. Importing this module imports neither Keras nor
TensorFlow (the app's pages read runs, and start fast).
"""

import json
import math
import os
import re
import time

from studio.files.atomic_write import write_file_atomically
from studio.files.json_file import read_json, read_json_or_none, write_json
from studio.trainers.run.training_checkpoint import TrainingCheckpoint

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
CHECKPOINTS_FOLDER = "checkpoints"
LOGS_FOLDER = "logs"
SAMPLES_FOLDER = "samples"
# Created by anyone who wants the run to stop after its current step.
STOP_FILE = "STOP"
# One JSON line per step (step, loss, time), for watching a run live.
PROGRESS_FILE = "progress.jsonl"
# Sample images: `samples/step-000500-0.png`, ...
SAMPLE_FILE_PATTERN = "step-{step:06d}-{index}.png"
_SAMPLE_NAME = re.compile(r"step-(\d+)-(\d+)\.png")
# Results, in the run folder and in each checkpoint: the textual-inversion
# embedding, the DreamBooth LoRA, or full DreamBooth's Keras weight files.
EMBEDDING_FILE = "embedding.safetensors"
LORA_FILE = "lora.safetensors"
UNET_WEIGHTS_FILE = "unet.weights.h5"
TEXT_ENCODER_WEIGHTS_FILE = "text_encoder.weights.h5"
# SD-XL's second text encoder (OpenCLIP bigG), when full DreamBooth trains it.
TEXT_ENCODER_2_WEIGHTS_FILE = "text_encoder_2.weights.h5"
RESULT_FILES = (EMBEDDING_FILE, LORA_FILE)
# Written by the process that runs the command for the app
# (`studio.app.training_process`): its id when it starts, its exit code
# when it ends, and its output.
PROCESS_FILE = "process.json"
EXIT_FILE = "exit.json"
LOG_FILE = "train.log"
# Written by the app when it starts a new run: the settings asked for,
# readable before the run writes `config.json` (minutes later).
REQUEST_FILE = "request.json"
# Written by the app's training process: what the run is doing now
# (`studio.trainers.run.run_phase`), with a count where there is one.
PHASE_FILE = "phase.json"
# `status` of `summary.json`: how the last session of the run ended.
STATUS_COMPLETED = "completed"
STATUS_NON_FINITE = "stopped: non-finite loss"
STATUS_OUT_OF_DATA = "stopped: out of data"
STATUS_STOPPED = "stopped: by request"
# Read with a default instead of raising, see `read_config`.
_REQUIRED = object()


def _file_property(name):
    """A read-only attribute: the path of `name` in the run's folder."""
    return property(lambda self: os.path.join(self.path, name), doc=f"`{name}` in the run's folder.")


class RunDirectory:
    """Where a training run keeps everything, laid out the same for every trainer.

    ```
    RUN_DIR/
      config.json       what was asked for (the command's settings)
      checkpoints/      step-000500/ ... (see `TrainingCheckpoint`)
      logs/             TensorBoard event files
      samples/          sample images, step-000500-0.png ...
      summary.json      steps, time, final loss, device, precision
      progress.jsonl    one line per step: step, loss, time, elapsed
      STOP              (only when asked) stop after the current step
      <results>         embedding.safetensors, lora.safetensors, unet.weights.h5
      process.json      (app runs) the training process: id, start time, command
      exit.json         (app runs) its exit code and error
      train.log         (app runs) its output
      request.json      (app runs) the settings asked for, before config.json exists
      phase.json        (app runs) what it is doing now: phase, done, total, time
      .lock             held by the process training in the folder (`lock`)
    ```

    JSON files are written atomically (temporary file, then rename), so a
    crash leaves the previous version or the new one, never half a file.
    Every `read_*` method reads the files again, so it is current whichever
    process is writing the run.

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

    config_path = _file_property(CONFIG_FILE)
    summary_path = _file_property(SUMMARY_FILE)
    checkpoints_path = _file_property(CHECKPOINTS_FOLDER)
    logs_path = _file_property(LOGS_FOLDER)
    samples_path = _file_property(SAMPLES_FOLDER)
    stop_path = _file_property(STOP_FILE)
    progress_path = _file_property(PROGRESS_FILE)
    process_path = _file_property(PROCESS_FILE)
    exit_path = _file_property(EXIT_FILE)
    log_path = _file_property(LOG_FILE)
    phase_path = _file_property(PHASE_FILE)
    request_path = _file_property(REQUEST_FILE)

    def lock(self):
        """A `RunLock` of the folder: `with run.lock():` while training in it.

        Raises (on entering):
            RunLockedError: another process trains in the folder.
        """
        from studio.trainers.run.run_lock import RunLock

        return RunLock(self.path, self.config_path)

    def request_stop(self):
        """Asks the run's training process to stop after its current step.

        It then writes a final checkpoint, its results and the summary
        (status "stopped: by request"), and `--resume` continues it.
        """
        with open(self.stop_path, "w", encoding="utf-8") as file:
            file.write("stop\n")

    def stop_requested(self):
        """True while a stop is asked for and not yet answered."""
        return os.path.exists(self.stop_path)

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
        write_json(self.config_path, config, sort_keys=True)

    def read_config(self, default=_REQUIRED):
        """The run's settings.

        Args:
            default: returned instead of raising when the folder has no
                readable config (yet); without it, a missing config raises.

        Raises:
            FileNotFoundError: the folder holds no run (and no `default`).
        """
        if default is not _REQUIRED:
            config = read_json_or_none(self.config_path)
            return default if config is None else config
        if not self.exists():
            raise FileNotFoundError(
                f"{self.path} holds no training run to resume: there is no {CONFIG_FILE}. "
                f"Received: {self.path}"
            )
        return read_json(self.config_path)

    def write_summary(self, summary):
        write_json(self.summary_path, summary, sort_keys=True)

    def read_summary(self):
        """The summary of the last completed (or stopped) session, or None.

        None also when the file is not valid JSON (written by hand).
        """
        return read_json_or_none(self.summary_path)

    def read_progress(self):
        """`[(step, loss, time)]` of `progress.jsonl`, one per step (the last line wins).

        A resumed run drops the lines past its checkpoint first
        (`restart_progress`); older run folders may still repeat steps. The
        last line may be half written: lines that do not parse, or have no
        step, are skipped.
        """
        points = {}
        try:
            with open(self.progress_path, encoding="utf-8") as file:
                for line in file:
                    try:
                        record = json.loads(line)
                        points[int(record["step"])] = (record.get("loss"), record.get("time"))
                    except (ValueError, KeyError, TypeError):
                        continue  # A line being written.
        except OSError:
            return []
        return [(step, loss, when) for step, (loss, when) in sorted(points.items())]

    def restart_progress(self, step):
        """Prepares `progress.jsonl` for a session resumed at `step`; returns the seconds it records.

        The lines past `step` come from a session that was killed after its
        last checkpoint, and the resumed run trains those steps again: they
        are dropped, so that readers see each step once (and a half-written
        last line goes too). The training time they record is not lost: the
        largest `elapsed` of the file is returned, and kept in a line
        `{"elapsed": ..., "time": ...}` without a step (which readers skip)
        when no kept line holds it.

        Args:
            step: the step the session resumes from (0: from the start).

        Returns:
            The training seconds the file records (0.0 when it records none).
        """
        try:
            with open(self.progress_path, encoding="utf-8") as file:
                lines = file.read().splitlines()
        except FileNotFoundError:
            return 0.0
        kept = {}
        recorded = kept_seconds = 0.0
        for line in lines:
            try:
                record = json.loads(line)
                elapsed = float(record.get("elapsed") or 0.0)
                line_step = int(record["step"]) if "step" in record else None
            except (ValueError, TypeError, AttributeError):
                continue  # Half written when its writer was killed.
            recorded = max(recorded, elapsed)
            if line_step is not None and line_step <= step:
                kept[line_step] = line
                kept_seconds = max(kept_seconds, elapsed)
        text = "".join(kept[line_step] + "\n" for line_step in sorted(kept))
        if recorded > kept_seconds:
            text += json.dumps({"elapsed": round(recorded, 3), "time": round(time.time(), 3)})
            text += "\n"
        write_file_atomically(self.progress_path, text.encode("utf-8"))
        return recorded

    def sample_path(self, step, index):
        """The PNG of sample `index` at `step`."""
        return os.path.join(self.samples_path, SAMPLE_FILE_PATTERN.format(step=step, index=index))

    def sample_files(self):
        """Dict step -> sample PNG paths (by index), steps ascending."""
        found = {}
        for name in _list(self.samples_path):
            match = _SAMPLE_NAME.fullmatch(name)
            if match:
                found.setdefault(int(match.group(1)), []).append(
                    (int(match.group(2)), os.path.join(self.samples_path, name))
                )
        return {step: [path for _, path in sorted(items)] for step, items in sorted(found.items())}

    def checkpoints(self, keep=None):
        """The run's `TrainingCheckpoint` (`keep`: how many of the newest it keeps)."""
        return TrainingCheckpoint(self.checkpoints_path, keep=keep)

    def checkpoint_folders(self):
        """`[(step, folder)]` of the complete checkpoints, ascending."""
        checkpoints = self.checkpoints()
        return [(step, checkpoints.folder(step)) for step in checkpoints.steps()]

    def result_file(self, folder=None):
        """The embedding or LoRA file in `folder` (default: the run's folder), or None.

        None also for full DreamBooth, whose results are Keras weight files.
        """
        for name in RESULT_FILES:
            path = os.path.join(self.path if folder is None else folder, name)
            if os.path.isfile(path):
                return path
        return None

    def checkpoint_result_files(self):
        """`[(step, path)]` of the embedding or LoRA file in each checkpoint."""
        result = []
        for step, folder in self.checkpoint_folders():
            for name in RESULT_FILES:
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    result.append((step, path))
        return result

    def write_process_record(self, record):
        """Writes `process.json` (the app's training process: pid, start time, command)."""
        write_json(self.process_path, record)

    def read_process_record(self):
        """The `process.json` record, or None (no app process, or being written)."""
        return read_json_or_none(self.process_path)

    def write_exit_record(self, record):
        """Writes `exit.json` (the training process's exit code and error)."""
        write_json(self.exit_path, record)

    def read_exit_record(self):
        """The `exit.json` record, or None while the process runs."""
        return read_json_or_none(self.exit_path)

    def remove_exit_record(self):
        """Forgets the exit of an earlier session (before a resume starts)."""
        if os.path.exists(self.exit_path):
            os.remove(self.exit_path)

    def write_request(self, request):
        """Writes `request.json`: what the app asked the training process for."""
        write_json(self.request_path, request, sort_keys=True)

    def read_request(self):
        """The `request.json` record, or None."""
        return read_json_or_none(self.request_path)

    def write_phase(self, phase, done=None, total=None, new_session=False):
        """Writes `phase.json`: the run is in `phase`, `done` of `total` (None: no count).

        The record keeps this session's earlier phases in `history`
        (`[{"phase", "started", "ended", "total"}]`), so a reader that looks
        now and then still sees each phase the run went through.

        Args:
            new_session: forget the phases of an earlier session (a
                training process starting).
        """
        now = round(time.time(), 3)
        previous = None if new_session else self.read_phase()
        history = list((previous or {}).get("history") or [])
        started = now
        if previous is not None:
            if previous.get("phase") == phase:
                started = previous.get("started", now)
            else:
                history.append({"phase": previous.get("phase"), "started": previous.get("started"),
                                "ended": now, "total": previous.get("total")})
        write_json(self.phase_path, {"phase": phase, "done": done, "total": total,
                                     "started": started, "time": now, "history": history})

    def read_phase(self):
        """The `phase.json` record (`phase`, `done`, `total`, `time`), or None."""
        return read_json_or_none(self.phase_path)

    def read_log(self):
        """The training process's output (`train.log`), or "" when there is none."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as file:
                return file.read()
        except OSError:
            return ""

    def last_activity(self):
        """The newest modification time among the run's own files (for sorting runs)."""
        times = [os.path.getmtime(self.path)]
        for path in (self.config_path, self.summary_path, self.progress_path, self.process_path):
            if os.path.exists(path):
                times.append(os.path.getmtime(path))
        return max(times)


def progress_line(step, loss, when, elapsed=None):
    """One line of `progress.jsonl`: a non-finite or missing loss is written as null.

    `elapsed`: the run's training seconds so far, all sessions together
    (None: not recorded).
    """
    loss = None if loss is None or not math.isfinite(float(loss)) else float(loss)
    record = {"step": int(step), "loss": loss, "time": round(when, 3)}
    if elapsed is not None:
        record["elapsed"] = round(elapsed, 3)
    return json.dumps(record) + "\n"


def _list(folder):
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []
