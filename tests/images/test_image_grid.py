"""The one labelled grid: layout, label bands, counts."""

import numpy as np
import pytest

from studio.images.grid_style import GridStyle
from studio.images.image_grid import make_image_grid


def solid(value, size=8):
    return np.full((size, size, 3), value, np.uint8)


def test_cells_are_placed_row_by_row_with_gaps_and_margin():
    style = GridStyle(gap=2, margin=3, background=(0, 0, 0))
    grid = np.asarray(make_image_grid([solid(v) for v in (10, 20, 30, 40, 50)], 3, style=style))
    assert grid.shape == (3 + 2 * 8 + 2 + 3, 3 + 3 * 8 + 2 * 2 + 3, 3)
    assert (grid[3, 3] == 10).all() and (grid[3, 3 + 10] == 20).all()
    assert (grid[3 + 10, 3 + 10] == 50).all()  # Row 1, column 1.
    assert (grid[3 + 10, 3 + 20] == 0).all()  # The empty last cell.


def test_label_bands_move_the_cells():
    style = GridStyle(gap=2, margin=3, row_label_width=40, column_label_height=20)
    grid = make_image_grid([solid(100)] * 4, cell_size=16, row_labels=["a", "b · c"],
                           column_labels=["x", "y"], style=style)
    left, top = 3 + 40 + 2, 3 + 20 + 2
    assert grid.size == (left + 2 * 18 - 2 + 3, top + 2 * 18 - 2 + 3)
    assert (np.asarray(grid)[top, left] == 100).all()


def test_integer_zoom_repeats_pixels():
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    grid = np.asarray(make_image_grid([image], 1, cell_size=(6, 6), style=GridStyle(margin=0)))
    np.testing.assert_array_equal(grid, image.repeat(3, axis=0).repeat(3, axis=1))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"labels": ["a"]}, "2 images, 1 labels"),
        ({"columns": 1, "row_labels": ["a"]}, "2 rows, 1 row labels"),
        ({"columns": 2, "column_labels": ["a", "b", "c"]}, "2 columns, 3 column labels"),
    ],
)
def test_label_counts_must_match(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_image_grid([solid(0), solid(1)], **kwargs)


def test_no_images_and_unknown_styles_are_errors():
    with pytest.raises(ValueError, match="no images"):
        make_image_grid([])
    with pytest.raises(ValueError, match="resample"):
        GridStyle(resample="bicubic")
