"""Checks of the arguments that choose KerasCV's or diffusers' numerics.

KerasCV's Stable Diffusion uses GroupNorm epsilon 1e-5 everywhere and the
tanh form of GELU in the UNet's GEGLU. diffusers (like the original LDM
code) uses 1e-6 in the VAE and in the UNet's spatial transformers, 1e-5
in the UNet's residual blocks, and the exact (erf) GELU. The networks
default to KerasCV's, so presets converted from KerasCV keep computing
what they always did; the importers of diffusers folders and single files
choose diffusers'.
"""

import math
import numbers

KERAS_CV_GROUP_NORM_EPSILON = 1e-5
KERAS_CV_GELU_APPROXIMATE = True


def check_norm_epsilon(name, value):
    """Returns `value` as a float, or raises ValueError naming `name`.

    Args:
        name: the argument's name, for the message.
        value: a GroupNorm epsilon; must be a positive, finite number.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"`{name}` must be a positive number (1e-5 as in KerasCV, 1e-6 "
            "as in diffusers' VAE and transformers). "
            f"Received: {name}={value!r}"
        )
    return float(value)


def check_gelu_approximate(value):
    """Returns `value`, or raises ValueError unless it is a bool."""
    # A string such as "false" would be truthy; refuse it rather than guess.
    if not isinstance(value, bool):
        raise ValueError(
            "`gelu_approximate` must be True (tanh form, as in KerasCV) or "
            "False (exact erf form, as in diffusers). "
            f"Received: gelu_approximate={value!r}"
        )
    return value
