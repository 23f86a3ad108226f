"""How an image grid looks: spacing, colours, label font and bands."""

import dataclasses

# Fonts with accents and most scripts, tried in order (Pillow searches the
# system font folders); Pillow's own default draws boxes for non-ASCII text.
LABEL_FONTS = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "Arial Unicode.ttf", "arial.ttf")
RESAMPLING = ("nearest", "lanczos")
SHORTENING = ("middle", "end")


@dataclasses.dataclass(frozen=True)
class GridStyle:
    """The look of a `make_image_grid` grid.

    Attributes:
        gap: pixels between cells, and between a label band and the cells.
        margin: pixels around the whole grid.
        background: RGB of the sheet.
        text_color: RGB of the labels.
        font_size: the labels' font size in pixels.
        resample: how images are scaled to the cell size: "nearest" (keeps
            pixels sharp; integer zooms repeat them) or "lanczos" (smooth
            thumbnails).
        cell_label_height: height of the band under each cell for its label.
        row_label_width: width of the band left of the rows for their labels.
        column_label_height: height of the band above the columns for their
            labels.
        shorten: where a label too long for its space loses characters for
            an ellipsis: "middle" (keeps a file name's end) or "end".
    """

    gap: int = 4
    margin: int = 4
    background: tuple = (255, 255, 255)
    text_color: tuple = (30, 30, 30)
    font_size: int = 13
    resample: str = "nearest"
    cell_label_height: int = 16
    row_label_width: int = 194
    column_label_height: int = 24
    shorten: str = "middle"

    def __post_init__(self):
        if self.resample not in RESAMPLING:
            raise ValueError(
                f"`resample` must be one of {RESAMPLING}. Received: resample={self.resample!r}"
            )
        if self.shorten not in SHORTENING:
            raise ValueError(
                f"`shorten` must be one of {SHORTENING}. Received: shorten={self.shorten!r}"
            )
