"""Everything the pages show about one run folder, read through `RunDirectory`."""

import os
import re

from studio.app.run_status import read_run_status
from studio.trainers.run.run_directory import RunDirectory

TEXTUAL_INVERSION = "textual-inversion"
DREAMBOOTH = "dreambooth"
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
        self.run = RunDirectory(self.path)

    @property
    def name(self):
        return os.path.basename(self.path)

    @property
    def config(self):
        """The run's `config.json` settings; before the run writes it, the settings the app
        asked for (`request.json`); else {}."""
        config = self.run.read_config(default=None)
        if config is not None:
            return config
        request = self.run.read_request() or {}
        settings = request.get("settings")
        if not isinstance(settings, dict):
            return {}
        return {"method": request.get("method"), **settings}

    def phase(self):
        """The training process's `phase.json` record (see `RunDirectory.write_phase`), or None."""
        return self.run.read_phase()

    @property
    def summary(self):
        return self.run.read_summary()

    @property
    def method(self):
        """"textual-inversion" or "dreambooth", from the settings or the command."""
        config = self.config
        if "instance_prompt" in config:
            return DREAMBOOTH
        if "token" in config:
            return TEXTUAL_INVERSION
        command = (self.run.read_process_record() or {}).get("command", [])
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
        """When the run's current session (its last resume) started, seconds since the epoch,
        or None."""
        return (self.run.read_process_record() or {}).get("started")

    @property
    def first_started(self):
        """When the run first started (a resume keeps it), or None."""
        record = self.run.read_process_record() or {}
        first = record.get("first_started") or record.get("started")
        if first is None and os.path.exists(self.run.config_path):
            first = os.path.getmtime(self.run.config_path)
        return first

    def progress(self):
        """`[(step, loss, time)]` of the run's progress lines, one per step."""
        return self.run.read_progress()

    def status(self):
        return read_run_status(self.path, has_steps=bool(self.progress()))

    def samples(self):
        """Dict step -> sample PNG paths (by index), steps ascending."""
        return self.run.sample_files()

    def checkpoints(self):
        """`[(step, folder)]` of the complete checkpoints, ascending."""
        return self.run.checkpoint_folders()

    def result_file(self):
        """The run's final embedding or LoRA file, or None (full DreamBooth, or not yet)."""
        return self.run.result_file()

    def checkpoint_files(self):
        """`[(step, path)]` of the embedding or LoRA file in each checkpoint."""
        return self.run.checkpoint_result_files()

    def log_tail(self, lines=LOG_TAIL_LINES):
        """The last lines of the training process's output, without TensorFlow's start-up noise."""
        text = self.run.read_log()
        # tqdm redraws its bar with carriage returns; keep the last drawing.
        kept = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
        kept = [line for line in kept if line.strip() and not _ABSL_LINE.match(line)
                and not line.startswith(_ABSL_NOISE)]
        return "\n".join(kept[-lines:])

    def last_activity(self):
        """The newest modification time among the run's own files (for sorting)."""
        return self.run.last_activity()


def list_runs(runs_folder):
    """The `RunRecord` of every run folder in `runs_folder`, the latest started first."""
    try:
        names = sorted(os.listdir(runs_folder))
    except OSError:
        names = []
    records = [
        RunRecord(os.path.join(runs_folder, name))
        for name in names
        if not name.startswith(".") and os.path.isdir(os.path.join(runs_folder, name))
    ]
    return sorted(records, key=lambda record: record.first_started or record.last_activity(),
                  reverse=True)
