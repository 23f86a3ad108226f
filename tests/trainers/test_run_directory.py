"""Tests of RunDirectory, the layout of a training run's folder."""

import json
import os

import pytest

from studio.trainers.run.run_directory import RunDirectory


def test_create_lays_out_the_folder_and_writes_the_config(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert not run.exists()
    run.create({"token": "<tom>", "steps": 10})
    assert run.exists()
    for folder in ("checkpoints", "logs", "samples"):
        assert os.path.isdir(tmp_path / "run" / folder)
    with open(tmp_path / "run" / "config.json") as file:
        assert json.load(file) == {"token": "<tom>", "steps": 10}
    assert run.read_config() == {"token": "<tom>", "steps": 10}
    assert run.file("embedding.safetensors") == os.path.join(run.path, "embedding.safetensors")


def test_create_refuses_an_existing_run(tmp_path):
    run = RunDirectory(tmp_path)
    run.create({"a": 1})
    with pytest.raises(FileExistsError, match="already holds a training run"):
        RunDirectory(tmp_path).create({"a": 2})
    assert run.read_config() == {"a": 1}


def test_summary_is_written_atomically_and_read_back(tmp_path):
    run = RunDirectory(tmp_path)
    run.create({})
    assert run.read_summary() is None
    run.write_summary({"steps": 3, "final_loss": 0.5})
    run.write_summary({"steps": 4, "final_loss": 0.25})
    assert run.read_summary() == {"steps": 4, "final_loss": 0.25}
    # No temporary files are left beside it.
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoints", "config.json", "logs", "samples", "summary.json",
    ]


def test_read_config_of_a_folder_without_a_run_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no training run"):
        RunDirectory(tmp_path / "missing").read_config()


def test_the_app_reads_progress_samples_checkpoints_and_results(tmp_path):
    from studio.trainers.run.run_directory import progress_line

    run = RunDirectory(tmp_path)
    run.create({"steps": 4})
    with open(run.progress_path, "w", encoding="utf-8") as file:
        file.write(progress_line(1, 0.5, 10.0) + progress_line(2, float("nan"), 11.0))
        file.write(progress_line(1, 0.25, 12.0) + '{"step": 3, "lo')  # Resumed; half a line.
    assert run.read_progress() == [(1, 0.25, 12.0), (2, None, 11.0)]

    for step, index in ((2, 1), (2, 0), (10, 0)):
        open(run.sample_path(step, index), "wb").close()
    assert run.sample_files() == {
        2: [run.sample_path(2, 0), run.sample_path(2, 1)], 10: [run.sample_path(10, 0)],
    }

    checkpoints = run.checkpoints()
    complete, partial = checkpoints.folder(2), checkpoints.folder(4)
    for folder in (complete, partial):
        os.makedirs(folder)
        open(os.path.join(folder, "embedding.safetensors"), "wb").close()
    open(os.path.join(complete, "checkpoint.json"), "w").close()
    assert run.checkpoint_folders() == [(2, complete)]
    assert run.checkpoint_result_files() == [(2, os.path.join(complete, "embedding.safetensors"))]
    assert run.result_file() is None
    open(run.file("lora.safetensors"), "wb").close()
    assert run.result_file() == run.file("lora.safetensors")


def test_process_records_and_stop_requests(tmp_path):
    run = RunDirectory(tmp_path)
    assert run.read_process_record() is None and run.read_exit_record() is None
    assert run.read_config(default={}) == {} and not run.stop_requested()
    run.write_process_record({"pid": 1})
    run.write_exit_record({"code": 0})
    assert run.read_process_record() == {"pid": 1} and run.read_exit_record() == {"code": 0}
    run.remove_exit_record()
    assert run.read_exit_record() is None
    run.request_stop()
    assert run.stop_requested()
    (tmp_path / "summary.json").write_text("{half")
    assert run.read_summary() is None


def test_reading_a_run_imports_no_keras():
    import subprocess
    import sys

    code = ("import sys, studio.app.run_record, studio.app.file_library; "
            "print('keras' in sys.modules or 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
