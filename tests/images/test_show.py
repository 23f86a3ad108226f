"""`studio.show`: the notebook's grid, returned, saved, and cheap to import."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import studio
from studio.images.show import MIN_CELL_SIZE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def solid(value, size=32):
    return np.full((size, size, 3), value, np.uint8)


def test_small_images_are_enlarged_into_one_labelled_row():
    grid = studio.show([solid(10), solid(200)], labels=["before", "after"])
    pixels = np.asarray(grid)
    # One row of two cells, each zoomed from 32 px to at least MIN_CELL_SIZE.
    assert grid.width >= 2 * MIN_CELL_SIZE > grid.height - MIN_CELL_SIZE
    margin = 4
    assert (pixels[margin, margin] == 10).all()
    assert (pixels[margin + MIN_CELL_SIZE - 1, margin + MIN_CELL_SIZE - 1] == 10).all()
    assert (pixels[margin, grid.width - margin - 1] == 200).all()


def test_takes_a_batch_a_single_image_pil_images_files_and_generated_images(tmp_path):
    from studio.pipelines import GeneratedImages

    batch = np.stack([solid(v, 8) for v in (0, 50, 100, 150)])
    paths = [tmp_path / f"{index}.png" for index in range(4)]
    for image, path in zip(batch, paths):
        Image.fromarray(image).save(path)
    assert np.array_equal(np.asarray(studio.show(paths, columns=2)),
                          np.asarray(studio.show(batch, columns=2)))
    sizes = {
        studio.show(batch, columns=2).size,
        studio.show(list(batch), columns=2).size,
        studio.show([Image.fromarray(image) for image in batch], columns=2).size,
        studio.show(GeneratedImages(batch, [None] * 4), columns=2).size,
    }
    assert len(sizes) == 1
    assert studio.show(batch[0]).size < sizes.pop()


def test_saves_the_grid_it_returns(tmp_path):
    path = tmp_path / "grids" / "before_after.png"
    grid = studio.show([solid(10), solid(200)], labels=["a", "b"], save=path)
    with Image.open(path) as saved:
        assert np.array_equal(np.asarray(saved), np.asarray(grid))


@pytest.mark.parametrize("kwargs, message", [
    ({"images": []}, "at least one image"),
    ({"images": [solid(1)], "labels": ["a", "b"]}, "1 images, 2 labels"),
    ({"images": [solid(1)], "save": "grid.gif"}, "save='grid.gif'"),
])
def test_bad_arguments_say_what_is_wrong(kwargs, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message):
        studio.show(**kwargs)
    assert os.listdir(tmp_path) == []


def test_import_studio_and_show_do_not_import_keras():
    code = ("import sys, studio; studio.show; "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"
