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
