"""A contact sheet: the training images as the model sees them, in a labelled grid."""

from studio.images.grid_style import GridStyle
from studio.images.image_grid import make_image_grid

DEFAULT_TILE_SIZE = 160
# Thumbnails over their file names, light on dark (names shortened in the
# middle, so their extensions stay).
CONTACT_SHEET_STYLE = GridStyle(
    gap=4,
    margin=4,
    background=(40, 40, 40),
    text_color=(230, 230, 230),
    font_size=11,
    resample="lanczos",
    cell_label_height=16,
    shorten="middle",
)


def make_contact_sheet(images, labels, tile_size=DEFAULT_TILE_SIZE, columns=None):
    """Lays `images` out in a grid, each over its label.

    Args:
        images: uint8 array `(count, height, width, 3)` (or a list of them).
        labels: sequence of `count` strings, e.g. file names; long ones are
            shortened with an ellipsis.
        tile_size: int, side of each thumbnail in pixels.
        columns: int or None; None makes a roughly square grid of at most
            8 columns.

    Returns:
        A `PIL.Image.Image` in RGB.

    Raises:
        ValueError: if there are no images, or images and labels differ in
            number.
    """
    return make_image_grid(
        list(images),
        columns=columns,
        cell_size=tile_size,
        labels=[str(label) for label in labels],
        style=CONTACT_SHEET_STYLE,
    )
