"""`studio.show(images, labels=...)`: a labelled grid shown inline in Jupyter, and saved."""

import math
import os

import numpy as np
from PIL import Image

from studio.images.grid_style import GridStyle
from studio.images.image_grid import make_image_grid

# Cells are enlarged (by whole times, nearest neighbour) to at least this
# many pixels a side: a 32 px image and its label are unreadable otherwise.
MIN_CELL_SIZE = 128
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def show(images, labels=None, columns=None, save=None):
    """Lays `images` out in a grid, displays it in a notebook and returns it.

    In Jupyter (Kaggle, Colab) the grid appears under the cell; elsewhere
    nothing is displayed and the grid is only returned (and saved).

    Args:
        images: uint8 images `(height, width, 3)`: a sequence of arrays,
            PIL images or image file paths, one batch array `(count,
            height, width, 3)`, one image, or a `GeneratedImages` (what a
            pipeline returns).
        labels: None, or one string per image, drawn under it.
        columns: int, images per row; None makes a roughly square grid
            (one row for up to 8 images).
        save: None, or a path (`.png`, `.jpg`, `.webp`) to write the grid
            to; missing folders are created.

    Returns:
        The grid as a `PIL.Image.Image`.

    Raises:
        ValueError: no images, labels that do not match them, or an image
            format `save` cannot name.

    Example:

    ```python
    import studio
    studio.show(result, labels=["before", "after"], save="before_after.png")
    ```
    """
    images = _image_list(images)
    if not images:
        raise ValueError("`show` needs at least one image. Received: no images")
    if save is not None:
        extension = os.path.splitext(os.fspath(save))[1].lower()
        if extension not in IMAGE_FORMATS:
            raise ValueError(
                f"`save` must end in one of {', '.join(IMAGE_FORMATS)}. Received: save={save!r}"
            )
    if columns is None and len(images) <= 8:
        columns = len(images)
    height, width = images[0].shape[:2]
    zoom = max(1, math.ceil(MIN_CELL_SIZE / max(height, width)))
    grid = make_image_grid(
        images, columns, cell_size=(width * zoom, height * zoom), labels=labels,
        style=GridStyle(shorten="end"),
    )
    if save is not None:
        from studio.files.atomic_write import atomic_file

        with atomic_file(save) as file:
            grid.save(file, format=IMAGE_FORMATS[extension])
    _display(grid)
    return grid


def _image_list(images):
    images = getattr(images, "images", images)  # GeneratedImages
    if isinstance(images, np.ndarray) and images.ndim == 3:
        return [images]
    if hasattr(images, "convert") and hasattr(images, "size"):  # one PIL image
        return [np.asarray(images.convert("RGB"))]
    return [_rgb(image) for image in images]


def _rgb(image):
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as file:
            return np.asarray(file.convert("RGB"))
    if hasattr(image, "convert"):
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def _display(grid):
    """Shows `grid` under the running notebook cell; does nothing outside a kernel."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    # A terminal IPython would print the image's repr: only a kernel shows it.
    if shell is None or not hasattr(shell, "kernel"):
        return
    from IPython.display import display

    display(grid)
    # Returned as a cell's last value, the grid would show a second time.
    grid.__class__ = _ShownImage


class _ShownImage(Image.Image):
    """A PIL image already shown in the notebook: its rich reprs are off."""

    def _repr_png_(self):
        return None

    def _repr_jpeg_(self):
        return None

    def __repr__(self):
        return f"<grid {self.width}x{self.height}, shown above>"
