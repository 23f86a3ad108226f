"""A generated X/Y/Z plot: the labelled sheet, its cells, and the infotext it carries."""

import dataclasses


@dataclasses.dataclass
class GridSheet:
    """What `ParameterGrid.generate` makes.

    Attributes:
        image: the labelled sheet, a `PIL.Image.Image` in RGB.
        cells: uint8 images `(height, width, 3)`, nested `[z][y][x]`.
        cell_parameters: `GenerationParameters` of each cell, nested alike.
        parameters: the sheet's `GenerationParameters`: the first cell's,
            with A1111's X/Y/Z plot fields (`Script`, `X Type`, `X Values`, ...).
    """

    image: object
    cells: list
    cell_parameters: list
    parameters: object

    def save(self, path):
        """Writes the sheet as a PNG that carries its parameters, atomically; returns `path`."""
        from studio.images.png_io import save_png

        return save_png(self.image, path, self.parameters)
