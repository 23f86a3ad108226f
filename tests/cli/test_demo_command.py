import json
import os

import numpy as np
import pytest
from PIL import Image

from studio.cli.demo_command import comparison_grid
from studio.evaluation import render_concept_set
from studio.cli.main import main


def test_concept_set_is_five_captioned_crosses(tmp_path):
    paths = render_concept_set(str(tmp_path), seed=0)
    assert len(paths) == 5
    for path in paths:
        assert np.asarray(Image.open(path)).shape == (32, 32, 3)
        with open(path[: -len(".png")] + ".txt") as file:
            lines = file.read().split()
        assert "{}" in lines and "cross" not in lines
    again = render_concept_set(str(tmp_path / "again"), seed=0)
    assert all(np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
               for a, b in zip(paths, again))


def test_comparison_grid_puts_before_left_and_after_right():
    before = np.zeros((6, 32, 32, 3), np.uint8)
    after = np.full((6, 32, 32, 3), 200, np.uint8)
    grid = comparison_grid(before, after, rows=2, columns=3)
    side = 32 * 4
    assert grid.shape[0] == 2 * side
    assert (grid[:, : 3 * side] == 0).all()
    assert (grid[:, -3 * side :] == 200).all()


@pytest.mark.large
@pytest.mark.tensorflow_only
def test_demo_teaches_the_concept(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    with open(out / "scores.json") as file:
        scores = json.load(file)
    assert scores["before"]["concept_fidelity"] <= 0.2
    assert scores["after"]["concept_fidelity"] >= 0.8
    assert scores["after"]["editability"] >= 0.7
    for name in ("before_after.png", "textual-inversion/embedding.safetensors"):
        assert os.path.isfile(out / name) and str(out / name).split("/")[-1] in printed
    assert os.listdir(out / "textual-inversion" / "logs")
