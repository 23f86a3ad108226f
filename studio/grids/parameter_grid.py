"""An X/Y/Z plot over generation settings, as AUTOMATIC1111's script draws and records it."""

import dataclasses
import os

import numpy as np

from studio.errors import InvalidInputError
from studio.grids.grid_axis import GridAxis
from studio.grids.grid_drawing import GRID_STYLE, draw_grid
from studio.grids.grid_sheet import GridSheet
from studio.images.image_grid import make_image_grid

SCRIPT_KEY = "Script"
SCRIPT_NAME = "X/Y/Z plot"
AXIS_LETTERS = ("X", "Y", "Z")
# A1111's value of an unused axis' type.
NO_AXIS = "Nothing"
MAX_SEED = 2**32 - 1


@dataclasses.dataclass
class ParameterGrid:
    """A grid of images: `settings` with the values of up to three axes.

    Cell `(x, y, z)` is `settings` with value `x` of `x`, `y` of `y`, `z` of
    `z` (an axis of files first, so that a LoRA-strength axis reaches an
    axis' LoRA). Without a seed axis every cell has `settings.seed` (one
    random seed when None), so differences come from the axes alone.

    Args:
        settings: the `GenerationSettings` every cell starts from (one prompt).
        x: the `GridAxis` of the columns.
        y: the `GridAxis` of the rows, or None.
        z: the `GridAxis` of the sheets side by side, or None.
        lora_strength: the strength a `lora` axis' files are applied at.

    Example:

    ```python
    grid = ParameterGrid(GenerationSettings("a red circle", model="tiny-shapes", steps=10),
                         x=GridAxis("seed", [1, 2, 3]), y=GridAxis("cfg", [3, 7.5]))
    grid.generate().save("grid.png")
    ```
    """

    settings: object
    x: GridAxis
    y: GridAxis = None
    z: GridAxis = None
    lora_strength: float = 1.0

    def __post_init__(self):
        if not isinstance(self.settings.prompt, str):
            raise InvalidInputError(
                "A grid varies one prompt (a `prompt` or `prompt_sr` axis gives several). "
                f"Received: {len(self.settings.prompt)} prompts"
            )
        kinds = [axis.kind for axis in self.axes]
        if len(set(kinds)) != len(kinds):
            raise InvalidInputError(
                f"Each setting can be varied by one axis only. Received: axes {kinds}"
            )

    @property
    def axes(self):
        return [axis for axis in (self.x, self.y, self.z) if axis is not None]

    @property
    def shape(self):
        """`(z, y, x)`: the number of sheets, rows and columns."""
        return tuple(len(axis.values) if axis else 1 for axis in (self.z, self.y, self.x))

    def cell_settings(self, x, y=0, z=0):
        """The `GenerationSettings` of cell `(x, y, z)`."""
        settings = self.settings
        chosen = [(axis, index) for axis, index in ((self.x, x), (self.y, y), (self.z, z)) if axis]
        for axis, index in sorted(chosen, key=lambda pair: not pair[0].is_file_kind):
            settings = axis.apply(settings, index, self.lora_strength)
        return settings

    def infotext_fields(self):
        """A1111's X/Y/Z plot fields: `Script`, `X Type`, `X Values`, ..."""
        fields = {SCRIPT_KEY: SCRIPT_NAME}
        for letter, axis in zip(AXIS_LETTERS, (self.x, self.y, self.z)):
            if axis is not None:
                fields[f"{letter} Type"] = axis.label
                fields[f"{letter} Values"] = axis.values_text()
        return fields

    def generate(self, runner=None, callback=None):
        """Generates every cell and draws the labelled sheet.

        Cells are made model by model (a model with its LoRA files is loaded
        once), one image each.

        Args:
            runner: a `GenerationRunner` (default: a new one).
            callback: called as `callback(done, total)` after each cell.

        Returns:
            A `GridSheet`.
        """
        from studio.pipelines.generation_runner import GenerationRunner

        runner = runner or GenerationRunner()
        grid = self
        if self.settings.seed is None:
            seed = int(np.random.SeedSequence().entropy % MAX_SEED)
            grid = dataclasses.replace(self, settings=dataclasses.replace(self.settings, seed=seed))
        depth, rows, columns = grid.shape
        positions = [(x, y, z) for z in range(depth) for y in range(rows) for x in range(columns)]
        cells = {position: grid.cell_settings(*position) for position in positions}
        order = sorted(positions, key=lambda p: (str(cells[p].model), cells[p].loras))
        images, parameters = {}, {}
        for done, position in enumerate(order, start=1):
            result = runner.run(cells[position])
            images[position] = result.images[0]
            parameters[position] = result.parameters[0]
            if callback is not None:
                callback(done, len(order))
        nested = [[[images[(x, y, z)] for x in range(columns)] for y in range(rows)]
                  for z in range(depth)]
        first = parameters[(0, 0, 0)]
        sheet_parameters = dataclasses.replace(
            first, extra={**first.extra, **grid.infotext_fields()})
        return GridSheet(
            image=grid._draw(nested),
            cells=nested,
            cell_parameters=[[[parameters[(x, y, z)] for x in range(columns)]
                              for y in range(rows)] for z in range(depth)],
            parameters=sheet_parameters,
        )

    def _draw(self, nested):
        sheets = [
            draw_grid(sheet, self.y.value_labels() if self.y else None, self.x.value_labels())
            for sheet in nested
        ]
        if self.z is None:
            return sheets[0]
        return make_image_grid(sheets, columns=len(sheets),
                               column_labels=self.z.value_labels(), style=GRID_STYLE)

    @classmethod
    def from_parameters(cls, parameters, overrides=None, search_folders=()):
        """The grid a sheet's infotext describes (A1111's X/Y/Z plot fields), to make it again.

        Args:
            parameters: the sheet's `GenerationParameters`.
            overrides: as `settings_from_parameters`: settings that replace
                what the sheet says.
            search_folders: folders searched for the LoRA and embedding files
                the first cell names (axis files are found by their paths).

        Returns:
            `(grid, notes)`; notes as `settings_from_parameters`.

        Raises:
            InvalidInputError: the infotext has no X/Y/Z plot, an axis the
                studio cannot vary, or settings it cannot reproduce.
        """
        from studio.pipelines.settings_from_parameters import settings_from_parameters

        axes = {}
        for letter in AXIS_LETTERS:
            label = parameters.extra.get(f"{letter} Type")
            if label and label != NO_AXIS:
                axes[letter] = GridAxis.from_a1111(label, parameters.extra.get(f"{letter} Values", ""))
        if "X" not in axes:
            raise InvalidInputError(
                "The image is not an X/Y/Z plot: its parameters have no `X Type` and "
                "`X Values`. Received: "
                f"{', '.join(sorted(parameters.extra)) or 'no further fields'}"
            )
        lora_files = [path for axis in axes.values() if axis.kind == "lora" for path in axis.files()]
        embedding_files = [
            path for axis in axes.values() if axis.kind == "embedding" for path in axis.files()]
        overrides = dict(overrides or {})
        model_axes = [axis for axis in axes.values() if axis.kind == "model"]
        if model_axes:
            # The first cell's `Model:` is a name; the axis has what loads it.
            overrides.setdefault("model", model_axes[0].values[0])
        first_cell, notes = settings_from_parameters(
            parameters, overrides=overrides, lora_files=lora_files,
            embedding_files=embedding_files, search_folders=search_folders)
        axis_files = {os.path.abspath(path) for path in lora_files + embedding_files}
        strengths = [s for path, s in first_cell.loras if os.path.abspath(path) in axis_files]
        settings = dataclasses.replace(
            first_cell,
            loras=[(p, s) for p, s in first_cell.loras if os.path.abspath(p) not in axis_files],
            embeddings=[p for p in first_cell.embeddings if os.path.abspath(p) not in axis_files],
        )
        grid = cls(settings, axes["X"], axes.get("Y"), axes.get("Z"),
                   lora_strength=strengths[0] if strengths else 1.0)
        return grid, notes
