"""A run's status comes from its files: process record, exit record, summary, STOP."""

import json
import os
import subprocess
import sys

import pytest

from studio.app import run_status
from studio.app.run_status import read_run_status
from studio.app.training_process import process_start_time


def write(folder, name, data):
    with open(os.path.join(folder, name), "w", encoding="utf-8") as file:
        json.dump(data, file)


def alive_record():
    pid = os.getpid()
    return {"pid": pid, "start_time": process_start_time(pid), "started": 0}


@pytest.fixture
def dead_record():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return {"pid": process.pid, "start_time": 1, "started": 0}


def test_alive_process_is_starting_then_running_then_stopping(tmp_path):
    write(tmp_path, "process.json", alive_record())
    assert read_run_status(tmp_path).state == run_status.STARTING
    assert read_run_status(tmp_path, has_steps=True).state == run_status.RUNNING
    (tmp_path / "STOP").write_text("stop")
    assert read_run_status(tmp_path, has_steps=True).state == run_status.STOPPING


def test_reused_process_id_is_not_the_run(tmp_path):
    record = dict(alive_record(), start_time=alive_record()["start_time"] - 1)
    write(tmp_path, "process.json", record)
    assert read_run_status(tmp_path).state == run_status.INTERRUPTED


def test_ended_runs_read_their_exit_and_summary(tmp_path, dead_record):
    write(tmp_path, "process.json", dead_record)
    assert read_run_status(tmp_path).state == run_status.INTERRUPTED
    write(tmp_path, "exit.json", {"code": 2, "error": "--token must not be a word"})
    status = read_run_status(tmp_path)
    assert (status.state, status.message) == (run_status.FAILED, "--token must not be a word")
    write(tmp_path, "exit.json", {"code": 0, "error": None})
    write(tmp_path, "summary.json", {"status": "stopped: by request", "steps": 3,
                                     "target_steps": 6})
    status = read_run_status(tmp_path)
    assert status.state == run_status.STOPPED
    assert "at step 3 of 6" in status.message
    write(tmp_path, "summary.json", {"status": "completed", "steps": 6})
    assert read_run_status(tmp_path).state == run_status.FINISHED


def test_run_of_the_command_line_reads_its_summary(tmp_path):
    write(tmp_path, "summary.json", {"status": "completed", "steps": 6})
    assert read_run_status(tmp_path).state == run_status.FINISHED
