"""Which variables of a training state are unusable: non-finite, or beyond float16's range."""

import numpy as np

from studio.trainers.run.training_checkpoint import training_state_variables

# The largest float16 value. Results (embeddings, LoRAs) are loaded in
# float16 by the studio's pipelines and by other tools, and mixed-precision
# training computes in it: a trained weight beyond this is infinite there,
# a run that diverged, not a result.
FLOAT16_MAX = float(np.finfo(np.float16).max)
# How many variable paths a message names before "and N more".
PATHS_SHOWN = 3


def unusable_variables(model):
    """The paths of `model`'s training-state variables that make it unusable.

    A trainable variable is unusable when it holds a NaN, an infinity or a
    value beyond `FLOAT16_MAX` in magnitude; an optimizer variable (moments,
    loss scale) when it holds a NaN or an infinity. Integer variables
    (step counts, seed states) are always usable.

    Args:
        model: a compiled `keras.Model` whose variables are current (under
            JAX, after `StepCallback.sync_model_state`).

    Returns:
        A list of variable paths, empty when the state is good.
    """
    trainable = {id(variable) for variable in model.trainable_variables}
    bad = []
    for variable in training_state_variables(model):
        values = np.asarray(variable.numpy())
        if "bfloat16" in values.dtype.name:  # ml_dtypes' bfloat16 is no NumPy float.
            values = values.astype(np.float32)
        if values.dtype.kind != "f" or values.size == 0:
            continue
        # One variable at a time: a copy of its size at most, never the model's.
        usable = np.isfinite(values).all()
        if usable and id(variable) in trainable:
            usable = np.abs(values).max() <= FLOAT16_MAX
        if not usable:
            bad.append(variable.path)
    return bad


def describe_variables(paths, shown=PATHS_SHOWN):
    """"3 variable(s): a, b, c" or "112 variable(s): a, b, c and 109 more": one short line."""
    named = ", ".join(paths[:shown])
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return f"{len(paths)} variable(s): {named}{more}"
