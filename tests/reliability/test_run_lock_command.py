"""Issue 23 item 14: a second training process in a run folder gets one line, exit 2."""

import os

import numpy as np
import pytest

from studio.cli.main import main
from studio.trainers.run.run_directory import RunDirectory

pytestmark = pytest.mark.tensorflow_only


def test_a_second_training_process_in_a_run_folder_is_refused_in_one_line(tmp_path, capsys):
    from PIL import Image

    images = tmp_path / "circles"
    images.mkdir()
    for index in range(2):
        Image.fromarray(np.full((32, 32, 3), 40 * index, np.uint8)).save(images / f"c{index}.png")
    run = RunDirectory(tmp_path / "run")
    run.create({"steps": 1})
    config = open(run.config_path, encoding="utf-8").read()
    options = [
        "train", "textual-inversion", "--model", "tiny-shapes", "--data", str(images),
        "--token", "<lk>", "--init-word", "circle", "--steps", "1", "--out", run.path,
    ]
    with run.lock():  # As a training process would hold it.
        assert main([*options, "--resume"]) == 2
        error = capsys.readouterr().err
        assert main(options) == 2  # A fresh run on the same --out.
        fresh_error = capsys.readouterr().err
    for text in (error, fresh_error):
        assert text.count("\n") == 1 and "Traceback" not in text
        assert text.startswith("studio train textual-inversion: error: ") and "is in use" in text
        assert f"pid {os.getpid()}" in text
    # Nothing of the run was touched.
    assert open(run.config_path, encoding="utf-8").read() == config
    assert sorted(os.listdir(run.path)) == [".lock", "checkpoints", "config.json", "logs", "samples"]
