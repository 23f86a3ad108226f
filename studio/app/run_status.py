"""A training run's status, read from the files in its folder (never from app memory)."""

import dataclasses
import os
import time

from studio.app.training_process import process_start_time
from studio.trainers.run.run_directory import STATUS_COMPLETED, STATUS_NON_FINITE, RunDirectory

STARTING = "starting"
RUNNING = "running"
STOPPING = "stopping"
FINISHED = "finished"
STOPPED = "stopped"
FAILED = "failed"
INTERRUPTED = "interrupted"
# States whose process is alive: the page keeps polling them.
ACTIVE_STATES = (STARTING, RUNNING, STOPPING)
# States a run can be resumed from (it has a config; the last checkpoint is used).
RESUMABLE_STATES = (STOPPED, FAILED, INTERRUPTED)


@dataclasses.dataclass
class RunStatus:
    """Where a run is.

    Attributes:
        state: one of "starting" (process alive, no step yet), "running",
            "stopping" (stop asked), "finished", "stopped", "failed",
            "interrupted" (process gone without a word: killed, machine
            restarted).
        message: a sentence for people (the error of a failed run).
        pid: the training process's id while it is alive, else None.
    """

    state: str
    message: str = ""
    pid: int = None

    @property
    def is_active(self):
        return self.state in ACTIVE_STATES


def read_run_status(run_dir, has_steps=False):
    """The status of the run in `run_dir`, from its files alone.

    `process.json` and `exit.json` are written by the app's training
    process (`training_process`); `summary.json` and `STOP` by the run
    itself; runs started with the `studio train` command have only the
    latter.

    Args:
        run_dir: the run folder.
        has_steps: True when the run has logged a step (tells "starting"
            from "running").
    """
    run = RunDirectory(run_dir)
    process = run.read_process_record()
    exit_record = run.read_exit_record()
    summary = run.read_summary()
    stop_asked = run.stop_requested()

    if exit_record is None and process is not None and is_alive(process):
        pid = process["pid"]
        if stop_asked:
            return RunStatus(STOPPING, "Stopping after the current step, with a final checkpoint.", pid)
        if has_steps:
            return RunStatus(RUNNING, "Training.", pid)
        return RunStatus(STARTING, "Preparing the run: its first step comes after the phases below.", pid)
    if exit_record is not None and exit_record.get("code"):
        error = exit_record.get("error") or f"exit code {exit_record['code']}"
        return RunStatus(FAILED, error)
    if summary is not None and (exit_record is not None or process is None):
        status = summary.get("status", "")
        if status == STATUS_COMPLETED:
            return RunStatus(FINISHED, f"Finished {summary.get('steps')} steps.")
        if status == STATUS_NON_FINITE:
            return RunStatus(FAILED, "The loss became non-finite; the last good checkpoint is kept.")
        return RunStatus(STOPPED, f"{status.capitalize()} at step {summary.get('steps')} "
                         f"of {summary.get('target_steps')}.")
    if process is None and exit_record is None:
        return RunStatus(INTERRUPTED, "No training process is recorded for this run.")
    return RunStatus(
        INTERRUPTED,
        "The training process ended without a word (killed, or the machine restarted). "
        "Resume it from its last checkpoint.",
    )


def is_alive(process):
    """True while the process of a `process.json` record runs (not a reused id, not a zombie)."""
    pid = process.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        # Reaps it when it is this process's child that has ended.
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # Alive, someone else's.
    if _is_zombie(pid):
        return False
    recorded = process.get("start_time")
    current = process_start_time(pid)
    return recorded is None or current is None or recorded == current


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            return file.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def seconds_since(timestamp):
    return max(0.0, time.time() - timestamp)
