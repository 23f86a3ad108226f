"""An X/Y plot's cells: one generation setting per axis, every other setting shared.

`xy_cells` is the seam between the Compare page and the code that
generates: it turns two axes into a table of per-cell settings, which the
page generates with its pipeline. Issue 21 adds a library X/Y function
(`studio grid`); once it is merged, the page can call it instead, with the
same axes.
"""

from studio.errors import InvalidInputError

# Axis name -> (setting it changes, how its values are read).
AXES = {
    "CFG": ("guidance_scale", float),
    "Steps": ("num_steps", int),
    "Sampler": ("sampler", str),
    "Seed": ("seed", int),
}
MAX_VALUES = 8


def parse_axis_values(axis, text):
    """The values of `axis` from comma-separated `text` ("5, 7.5" for CFG).

    Raises:
        InvalidInputError: an unknown axis, no value, too many, or one that
            does not read as the axis's type.
    """
    if axis not in AXES:
        raise InvalidInputError(f"An X/Y axis is one of {', '.join(AXES)}. Received: {axis!r}")
    kind = AXES[axis][1]
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise InvalidInputError(f"Give the {axis} values, separated by commas.")
    if len(parts) > MAX_VALUES:
        raise InvalidInputError(f"At most {MAX_VALUES} {axis} values. Received: {len(parts)}")
    try:
        return [kind(part) for part in parts]
    except ValueError:
        raise InvalidInputError(
            f"{axis} values are {kind.__name__} numbers separated by commas. Received: {text!r}"
        ) from None


def xy_cells(x_axis, x_values, y_axis, y_values, shared):
    """The settings of each cell: rows follow `y_values`, columns `x_values`.

    Args:
        x_axis, y_axis: `AXES` names (different ones).
        x_values, y_values: their values (`parse_axis_values`).
        shared: the settings every cell shares (pipeline keyword arguments).

    Returns:
        A list (rows) of lists (columns) of keyword-argument dicts.
    """
    if x_axis == y_axis:
        raise InvalidInputError(f"The X and Y axes must differ. Received: {x_axis} twice")
    x_key, y_key = AXES[x_axis][0], AXES[y_axis][0]
    return [[{**shared, x_key: x, y_key: y} for x in x_values] for y in y_values]
