"""One labelled image grid for every sheet the studio draws.

The data-check contact sheet (thumbnails over their file names), the
app's comparison grid (rows of models beside their labels, columns of
seeds or prompts under theirs) and the demo's before/after grid are all
`make_image_grid` with their own `GridStyle`.
"""

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from studio.images.grid_style import LABEL_FONTS, GridStyle

# A roughly square grid has at most this many columns unless asked.
MAX_COLUMNS = 8
ELLIPSIS = "…"
# Pixels between a band's edge and its text; lines of a row label apart.
LABEL_PADDING = 2
LINE_SPACING = 4
# Parts of a row label drawn as lines of their own ("run · step 2").
ROW_LABEL_SEPARATOR = " · "
_RESAMPLING = {"nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


def make_image_grid(
    images,
    columns=None,
    cell_size=None,
    labels=None,
    row_labels=None,
    column_labels=None,
    style=GridStyle(),
):
    """Lays `images` out in rows of `columns` cells, with optional labels.

    Args:
        images: a sequence of uint8 images `(height, width, 3)` (arrays or
            PIL images), row by row.
        columns: int, cells per row; None makes a roughly square grid of at
            most 8 columns (or as many as `column_labels`).
        cell_size: `(width, height)` or one int for square cells; images
            are scaled to it (`style.resample`). None: the first image's size.
        labels: None, or one string per image, drawn under its cell.
        row_labels: None, or one string per row, drawn left of it (parts
            separated by " · " on lines of their own).
        column_labels: None, or one string per column, drawn above it.
        style: a `GridStyle`.

    Returns:
        A `PIL.Image.Image` in RGB.

    Raises:
        ValueError: there are no images, or the labels do not match the
            images, rows or columns in number.
    """
    images = [np.asarray(image, dtype=np.uint8) for image in images]
    if column_labels is not None and columns is None:
        columns = len(column_labels)
    columns = columns or min(MAX_COLUMNS, math.ceil(math.sqrt(max(len(images), 1))))
    rows = math.ceil(len(images) / columns)
    _check_counts(images, columns, rows, labels, row_labels, column_labels)
    if cell_size is None:
        cell_size = (images[0].shape[1], images[0].shape[0])
    elif isinstance(cell_size, int):
        cell_size = (cell_size, cell_size)
    cell_width, cell_height = cell_size

    label_height = style.cell_label_height if labels is not None else 0
    left = style.margin + (style.row_label_width + style.gap if row_labels is not None else 0)
    top = style.margin + (
        style.column_label_height + style.gap if column_labels is not None else 0
    )
    pitch_x = cell_width + style.gap
    pitch_y = cell_height + label_height + style.gap
    sheet = Image.new(
        "RGB",
        (left + columns * pitch_x - style.gap + style.margin,
         top + rows * pitch_y - style.gap + style.margin),
        tuple(style.background),
    )
    draw = ImageDraw.Draw(sheet)
    font = _label_font(style.font_size) if (labels or row_labels or column_labels) else None
    for index, image in enumerate(images):
        x = left + (index % columns) * pitch_x
        y = top + (index // columns) * pitch_y
        cell = Image.fromarray(image)
        if cell.size != (cell_width, cell_height):
            cell = cell.resize((cell_width, cell_height), _RESAMPLING[style.resample])
        sheet.paste(cell, (x, y))
        if labels is not None:
            text = _fit(draw, str(labels[index]), font, cell_width, style.shorten)
            draw.text((x, y + cell_height + LABEL_PADDING), text, fill=style.text_color, font=font)
    for column, label in enumerate(column_labels or ()):
        text = _fit(draw, str(label), font, cell_width, style.shorten)
        draw.text((left + column * pitch_x, style.margin + LABEL_PADDING), text,
                  fill=style.text_color, font=font)
    line_height = style.font_size + LINE_SPACING
    for row, label in enumerate(row_labels or ()):
        lines = [
            _fit(draw, part, font, style.row_label_width - style.gap, style.shorten)
            for part in str(label).split(ROW_LABEL_SEPARATOR)
        ]
        first = top + row * pitch_y + cell_height // 2 - len(lines) * line_height // 2
        for number, line in enumerate(lines):
            draw.text((style.margin, first + number * line_height), line,
                      fill=style.text_color, font=font)
    return sheet


def _check_counts(images, columns, rows, labels, row_labels, column_labels):
    problems = []
    if not images:
        problems.append("no images")
    if labels is not None and len(labels) != len(images):
        problems.append(f"{len(images)} images, {len(labels)} labels")
    if row_labels is not None and len(row_labels) != rows:
        problems.append(f"{rows} rows, {len(row_labels)} row labels")
    if column_labels is not None and len(column_labels) != columns:
        problems.append(f"{columns} columns, {len(column_labels)} column labels")
    if problems:
        raise ValueError(
            "Expected at least one image and one label per image, row and column given "
            f"labels. Received: {'; '.join(problems)}"
        )


def _label_font(size):
    for name in LABEL_FONTS:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the bitmap font.
        return ImageFont.load_default()


def _fit(draw, text, font, width, shorten):
    """`text`, shortened with an ellipsis (in the middle or at the end) to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    keep = len(text)
    while keep > 1:
        keep -= 1
        if shorten == "end":
            candidate = text[:keep] + ELLIPSIS
        else:
            head = text[: (keep + 1) // 2]
            tail = text[len(text) - keep // 2 :] if keep // 2 else ""
            candidate = head + ELLIPSIS + tail
        if draw.textlength(candidate, font=font) <= width:
            return candidate
    return ELLIPSIS
