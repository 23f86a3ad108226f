"""How grids of generated images are drawn: cells zoomed to a readable size, labels beside them."""

import numpy as np

from studio.images.grid_style import GridStyle
from studio.images.image_grid import make_image_grid

# Small models make tiny images; cells are zoomed by whole numbers to at
# least this size, so labels fit and pixels stay sharp.
MIN_CELL_SIZE = 128
# `GridStyle`'s dark labels on near-white, a row-label band that with the
# margin is 200 pixels wide; labels too long lose their end.
GRID_STYLE = GridStyle(gap=6, margin=6, background=(250, 250, 250), shorten="end")


def draw_grid(images, row_labels, column_labels):
    """Lays `images[row][column]` out under column labels, beside row labels.

    The `studio grid` sheets and the app's Compare page are drawn by it.

    Args:
        images: nested sequence, one list of uint8 `(height, width, 3)`
            images per row, all of one size.
        row_labels: one string per row, or None (no row labels).
        column_labels: one string per column.

    Returns:
        A `PIL.Image.Image` in RGB.

    Raises:
        ValueError: when the counts of rows, columns and labels differ.
    """
    rows = [[np.asarray(image, np.uint8) for image in row] for row in images]
    if not rows or (row_labels is not None and len(rows) != len(row_labels)) or any(
        len(row) != len(column_labels) for row in rows
    ):
        raise ValueError(
            "Expected one label per row and per column, and every row as long as the "
            f"column labels. Received: {len(rows)} rows for "
            f"{'no' if row_labels is None else len(row_labels)} row labels, "
            f"row lengths {[len(row) for row in rows]} for {len(column_labels)} column labels"
        )
    height, width = rows[0][0].shape[:2]
    scale = max(1, -(-MIN_CELL_SIZE // max(height, width)))
    return make_image_grid(
        [image for row in rows for image in row],
        columns=len(column_labels),
        cell_size=(width * scale, height * scale),
        row_labels=row_labels,
        column_labels=column_labels,
        style=GRID_STYLE,
    )
