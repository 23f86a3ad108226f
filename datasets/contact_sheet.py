"""A contact sheet: the training images as the model sees them, in a labelled grid."""

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEFAULT_TILE_SIZE = 160
MAX_COLUMNS = 8
LABEL_HEIGHT = 16
LABEL_FONT_SIZE = 11
GAP = 4
SHEET_BACKGROUND = (40, 40, 40)
LABEL_COLOR = (230, 230, 230)
ELLIPSIS = "…"
# Fonts with accents and most scripts, tried in order (Pillow searches the
# system font folders); Pillow's own default draws boxes for non-ASCII names.
LABEL_FONTS = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "Arial Unicode.ttf", "arial.ttf")


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
    images = [np.asarray(image, dtype=np.uint8) for image in images]
    labels = [str(label) for label in labels]
    if not images or len(images) != len(labels):
        raise ValueError(
            "Expected at least one image and one label per image. Received: "
            f"{len(images)} images, {len(labels)} labels"
        )
    columns = columns or min(MAX_COLUMNS, math.ceil(math.sqrt(len(images))))
    rows = math.ceil(len(images) / columns)
    cell_width = tile_size + GAP
    cell_height = tile_size + LABEL_HEIGHT + GAP
    sheet = Image.new(
        "RGB", (columns * cell_width + GAP, rows * cell_height + GAP), SHEET_BACKGROUND
    )
    draw = ImageDraw.Draw(sheet)
    font = _label_font()
    for index, (image, label) in enumerate(zip(images, labels)):
        left = GAP + (index % columns) * cell_width
        top = GAP + (index // columns) * cell_height
        thumbnail = Image.fromarray(image).resize((tile_size, tile_size), Image.Resampling.LANCZOS)
        sheet.paste(thumbnail, (left, top))
        text = _fit(draw, label, font, tile_size)
        draw.text((left, top + tile_size + 2), text, fill=LABEL_COLOR, font=font)
    return sheet


def _label_font():
    for name in LABEL_FONTS:
        try:
            return ImageFont.truetype(name, LABEL_FONT_SIZE)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=LABEL_FONT_SIZE)
    except (TypeError, OSError):  # Pillow without FreeType: the bitmap font.
        return ImageFont.load_default()


def _fit(draw, text, font, width):
    """`text`, shortened in the middle with an ellipsis to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    keep = len(text)
    while keep > 1:
        keep -= 1
        head = text[: (keep + 1) // 2]
        tail = text[len(text) - keep // 2 :] if keep // 2 else ""
        candidate = head + ELLIPSIS + tail
        if draw.textlength(candidate, font=font) <= width:
            return candidate
    return ELLIPSIS
