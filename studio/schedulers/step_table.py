"""Every sampler's step as one linear form, so a whole loop compiles.

A scheduler's `step_table()` returns, for each step of its schedule, the
coefficients of that step (NumPy, one row per step). `step_from_table`
applies one row with `keras.ops` only, so a compiled sampling loop indexes
the table with its loop counter and never returns to Python between steps,
and a changed schedule is new input data rather than stale constants.

With `x` the current sample and `m` the UNet output for `input_scale * x`:

```
x0       = clip(original_from_sample * x + original_from_output * m)
epsilon  = epsilon_from_sample * x + epsilon_from_output * m
estimate = x0 + history_weight * (x0 - previous_x0)        # multistep
x_next   = next_from_sample * x + next_from_estimate * estimate
           + next_from_epsilon * epsilon + next_from_noise * noise
```

DDIM, Euler (and Euler a) and DPM-Solver++(2M) are all of this form; the
table of each is derived from the same coefficients as its `step`.
"""

import numpy as np
from keras import ops

STEP_TABLE_COLUMNS = (
    "timestep",
    "input_scale",
    "original_from_sample",
    "original_from_output",
    "clip_range",
    "epsilon_from_sample",
    "epsilon_from_output",
    "history_weight",
    "next_from_sample",
    "next_from_estimate",
    "next_from_epsilon",
    "next_from_noise",
)
# `clip_range` of a sampler that does not clip its x_0 prediction.
NO_CLIP = np.inf


def step_from_table(row, model_output, sample, noise, previous_original):
    """One sampling step from one row of a step table.

    Args:
        row: a dict of `STEP_TABLE_COLUMNS` to scalars (tensors or numbers).
        model_output: the UNet output for `row["input_scale"] * sample`.
        sample: the current sample.
        noise: standard normal noise of `sample`'s shape.
        previous_original: the previous step's `x0` (zeros at the first step;
            `history_weight` is then 0).

    Returns:
        `(next_sample, original)`: the sample after the step and this step's
        `x0` estimate (the next step's `previous_original`).
    """
    original = row["original_from_sample"] * sample + row["original_from_output"] * model_output
    clip_range = row["clip_range"]
    original = ops.clip(original, -clip_range, clip_range)
    epsilon = row["epsilon_from_sample"] * sample + row["epsilon_from_output"] * model_output
    estimate = original + row["history_weight"] * (original - previous_original)
    next_sample = (
        row["next_from_sample"] * sample
        + row["next_from_estimate"] * estimate
        + row["next_from_epsilon"] * epsilon
        + row["next_from_noise"] * noise
    )
    return next_sample, original


def make_step_table(count, **columns):
    """A step table of `count` rows: the given columns, zeros elsewhere (float32).

    Args:
        count: number of steps.
        **columns: arrays of length `count` (or scalars) by column name.

    Returns:
        A dict of every column of `STEP_TABLE_COLUMNS` to a float32 array.

    Raises:
        ValueError: for a name that is not a column.
    """
    unknown = sorted(set(columns) - set(STEP_TABLE_COLUMNS))
    if unknown:
        raise ValueError(f"Unknown step table columns {unknown}. Expected {STEP_TABLE_COLUMNS}")
    table = {}
    for name in STEP_TABLE_COLUMNS:
        value = columns.get(name, 0.0)
        if name == "clip_range" and name not in columns:
            value = NO_CLIP
        table[name] = np.broadcast_to(np.asarray(value, np.float64), (count,)).astype(np.float32)
    return table
