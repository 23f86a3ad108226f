"""The dtype policies of a training run (`precision` settings)."""

# The dtype policies a training run may use.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# The policy of networks that train nothing (textual inversion's), per
# precision: under mixed precision their weights are stored in the
# compute dtype, as diffusers' `weight_dtype` does. Keras' mixed policies
# keep float32 weights for the optimizer, which frozen weights never see:
# half the memory, and no float32 -> half cast of every weight every step.
# They compute in the same dtype as under the mixed policy, with the same
# half-precision kernels (only normalisation scales are rounded too).
FROZEN_NETWORK_POLICIES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def frozen_network_policy(precision):
    """The dtype policy of networks that train nothing under `precision` (a `PRECISIONS` name)."""
    return FROZEN_NETWORK_POLICIES.get(precision, precision)
