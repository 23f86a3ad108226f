"""Everything the pages show about one run folder, read from its files."""

import json
import os
import re

from studio.app.run_status import read_run_status
from studio.app.training_process import LOG_FILE, PROCESS_FILE

TEXTUAL_INVERSION = "textual-inversion"
DREAMBOOTH = "dreambooth"
EMBEDDING_FILE = "embedding.safetensors"
LORA_FILE = "lora.safetensors"
_SAMPLE_NAME = re.compile(r"step-(\d+)-(\d+)\.png")
_CHECKPOINT_NAME = re.compile(r"step-(\d+)")
# TensorFlow's and XLA's start-up lines (absl format: "I0000 00:00:...").
_ABSL_LINE = re.compile(r"[IWE]\d{4} \d\d:\d\d:")
_ABSL_NOISE = ("WARNING: All log messages before absl", "To enable the following instructions")
LOG_TAIL_LINES = 30


class RunRecord:
    """A training run as its folder tells it: settings, progress, results, status.

    Nothing is kept between calls: every property reads the files again,
    so a record is current whichever process is writing the run.

    Args:
        path: the run folder.
    """

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))

    @property
    def name(self):
        return os.path.basename(self.path)

    @property
    def config(self):
        """The run's `config.json` settings, or {} before the run has written it."""
        return _read_json(os.path.join(self.path, "config.json")) or {}

    @property
    def summary(self):
        return _read_json(os.path.join(self.path, "summary.json"))

    @property
    def method(self):
        """"textual-inversion" or "dreambooth", from the settings or the command."""
        config = self.config
        if "instance_prompt" in config:
            return DREAMBOOTH
        if "token" in config:
            return TEXTUAL_INVERSION
        command = (_read_json(os.path.join(self.path, PROCESS_FILE)) or {}).get("command", [])
        return DREAMBOOTH if DREAMBOOTH in command else TEXTUAL_INVERSION

    @property
    def method_label(self):
        if self.method == TEXTUAL_INVERSION:
            return "Textual inversion"
        return "DreamBooth LoRA" if self.config.get("lora_rank") else "DreamBooth (full)"

    @property
    def target_steps(self):
        return self.config.get("steps")

    @property
    def started(self):
        """When the run (or its last resume) started, seconds since the epoch, or None."""
        return (_read_json(os.path.join(self.path, PROCESS_FILE)) or {}).get("started")

    def progress(self):
        """`[(step, loss, time)]` of `progress.jsonl`, one per step (the last line wins)."""
        points = {}
        try:
            with open(os.path.join(self.path, "progress.jsonl"), encoding="utf-8") as file:
                for line in file:
                    try:
                        record = json.loads(line)
                        points[int(record["step"])] = (record.get("loss"), record.get("time"))
                    except (ValueError, KeyError, TypeError):
                        continue  # A line being written.
        except OSError:
            return []
        return [(step, loss, when) for step, (loss, when) in sorted(points.items())]

    def status(self):
        return read_run_status(self.path, has_steps=bool(self.progress()))

    def samples(self):
        """Dict step -> sample PNG paths (by index), steps ascending."""
        folder = os.path.join(self.path, "samples")
        found = {}
        for name in _list(folder):
            match = _SAMPLE_NAME.fullmatch(name)
            if match:
                found.setdefault(int(match.group(1)), []).append(
                    (int(match.group(2)), os.path.join(folder, name))
                )
        return {step: [path for _, path in sorted(items)] for step, items in sorted(found.items())}

    def checkpoints(self):
        """`[(step, folder)]` of the complete checkpoints, ascending."""
        folder = os.path.join(self.path, "checkpoints")
        result = []
        for name in _list(folder):
            match = _CHECKPOINT_NAME.fullmatch(name)
            if match and os.path.isfile(os.path.join(folder, name, "checkpoint.json")):
                result.append((int(match.group(1)), os.path.join(folder, name)))
        return sorted(result)

    def result_file(self):
        """The run's final embedding or LoRA file, or None (full DreamBooth, or not yet)."""
        for name in (EMBEDDING_FILE, LORA_FILE):
            path = os.path.join(self.path, name)
            if os.path.isfile(path):
                return path
        return None

    def checkpoint_files(self):
        """`[(step, path)]` of the embedding or LoRA file in each checkpoint."""
        result = []
        for step, folder in self.checkpoints():
            for name in (EMBEDDING_FILE, LORA_FILE):
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    result.append((step, path))
        return result

    def log_tail(self, lines=LOG_TAIL_LINES):
        """The last lines of the training process's output, without TensorFlow's start-up noise."""
        try:
            with open(os.path.join(self.path, LOG_FILE), encoding="utf-8", errors="replace") as file:
                text = file.read()
        except OSError:
            return ""
        # tqdm redraws its bar with carriage returns; keep the last drawing.
        kept = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
        kept = [line for line in kept if line.strip() and not _ABSL_LINE.match(line)
                and not line.startswith(_ABSL_NOISE)]
        return "\n".join(kept[-lines:])

    def last_activity(self):
        """The newest modification time among the run's own files (for sorting)."""
        times = [os.path.getmtime(self.path)]
        for name in ("config.json", "summary.json", "progress.jsonl", PROCESS_FILE):
            path = os.path.join(self.path, name)
            if os.path.exists(path):
                times.append(os.path.getmtime(path))
        return max(times)


def list_runs(runs_folder):
    """The `RunRecord` of every run folder in `runs_folder`, most recently active first."""
    records = [
        RunRecord(os.path.join(runs_folder, name))
        for name in _list(runs_folder)
        if not name.startswith(".") and os.path.isdir(os.path.join(runs_folder, name))
    ]
    return sorted(records, key=lambda record: record.last_activity(), reverse=True)


def _list(folder):
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError):
        return None
