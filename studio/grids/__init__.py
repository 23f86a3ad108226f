"""X/Y/Z plots: a grid of images over seeds, prompts, CFG, steps, samplers, models and concept files.

`ParameterGrid` varies `GenerationSettings` along up to three `GridAxis`es,
generates every cell with a `GenerationRunner`, draws the labelled sheet
(`studio.images.make_image_grid`) and records in its infotext what
AUTOMATIC1111's X/Y/Z plot records (`X Type`, `X Values`, ...), so the
grid's PNG can be read back (`ParameterGrid.from_parameters`) and made again.
"""

from studio.grids.grid_axis import AXIS_KINDS, GridAxis
from studio.grids.grid_drawing import draw_grid
from studio.grids.grid_sheet import GridSheet
from studio.grids.parameter_grid import ParameterGrid

__all__ = ["AXIS_KINDS", "GridAxis", "GridSheet", "ParameterGrid", "draw_grid"]
