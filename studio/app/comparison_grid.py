"""A labelled image grid: rows of models, columns of seeds or prompts."""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROW_LABEL_WIDTH = 200
COLUMN_LABEL_HEIGHT = 36
GAP = 6
BACKGROUND = (250, 250, 250)
TEXT_COLOR = (30, 30, 30)
FONT_SIZE = 13
# Small models make tiny images; the grid shows cells at least this large.
MIN_CELL_SIZE = 128
FONTS = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "Arial Unicode.ttf", "arial.ttf")


def make_comparison_grid(images, row_labels, column_labels):
    """Lays `images[row][column]` out under column labels, beside row labels.

    Args:
        images: nested sequence, one list of uint8 `(height, width, 3)`
            images per row, all of one size.
        row_labels: one string per row.
        column_labels: one string per column.

    Returns:
        A `PIL.Image.Image` in RGB.

    Raises:
        ValueError: when the counts of rows, columns and labels differ.
    """
    rows = [[np.asarray(image, np.uint8) for image in row] for row in images]
    if not rows or len(rows) != len(row_labels) or any(
        len(row) != len(column_labels) for row in rows
    ):
        raise ValueError(
            "Expected one label per row and per column, and every row as long as the "
            f"column labels. Received: {len(rows)} rows for {len(row_labels)} row labels, "
            f"row lengths {[len(row) for row in rows]} for {len(column_labels)} column labels"
        )
    height, width = rows[0][0].shape[:2]
    scale = max(1, -(-MIN_CELL_SIZE // max(height, width)))
    cell_w, cell_h = width * scale, height * scale
    sheet = Image.new(
        "RGB",
        (ROW_LABEL_WIDTH + len(column_labels) * (cell_w + GAP) + GAP,
         COLUMN_LABEL_HEIGHT + len(rows) * (cell_h + GAP) + GAP),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(sheet)
    font = _font()
    for column, label in enumerate(column_labels):
        left = ROW_LABEL_WIDTH + GAP + column * (cell_w + GAP)
        draw.text((left, 8), _fit(draw, label, font, cell_w), fill=TEXT_COLOR, font=font)
    for row, (label, cells) in enumerate(zip(row_labels, rows)):
        top = COLUMN_LABEL_HEIGHT + row * (cell_h + GAP)
        # "run · step 2" reads best as two lines: the run, then which of its files.
        lines = [_fit(draw, part, font, ROW_LABEL_WIDTH - 2 * GAP) for part in label.split(" · ")]
        line_height = FONT_SIZE + 4
        first = top + cell_h // 2 - len(lines) * line_height // 2
        for index, line in enumerate(lines):
            draw.text((GAP, first + index * line_height), line, fill=TEXT_COLOR, font=font)
        for column, image in enumerate(cells):
            left = ROW_LABEL_WIDTH + GAP + column * (cell_w + GAP)
            tile = Image.fromarray(image).resize((cell_w, cell_h), Image.Resampling.NEAREST)
            sheet.paste(tile, (left, top))
    return sheet


def _font():
    for name in FONTS:
        try:
            return ImageFont.truetype(name, FONT_SIZE)
        except OSError:
            continue
    return ImageFont.load_default()


def _fit(draw, text, font, width):
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
