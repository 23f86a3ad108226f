"""The dtype policies of a training run (`precision` settings)."""

# The dtype policies a training run may use.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# The policy of networks whose own weights train nothing (textual
# inversion's; LoRA's, whose adapters are float32 variables of their own),
# per precision: under mixed precision their weights are stored in the
# compute dtype, as diffusers' `weight_dtype` does. Keras' mixed policies
# keep float32 weights for the optimizer, which frozen weights never see:
# half the memory, and no float32 -> half cast of every weight every step.
# They compute in the same dtype as under the mixed policy, with the same
# half-precision kernels (only normalisation scales are rounded too).
FROZEN_NETWORK_POLICIES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def frozen_network_policy(precision):
    """The dtype policy of networks that train nothing under `precision` (a `PRECISIONS` name)."""
    return FROZEN_NETWORK_POLICIES.get(precision, precision)


def backbone_policy(precision, frozen):
    """The dtype policy a run under `precision` loads its backbone in.

    Args:
        precision: a `PRECISIONS` name.
        frozen: no weight of the backbone's networks trains: textual
            inversion (its new token rows are a layer of their own) and
            LoRA (Keras' `Dense.enable_lora` adds float32 matrices and casts
            the adapted kernel to the compute dtype). Then the weights are
            stored in `frozen_network_policy(precision)`; networks that
            train (full fine-tuning) keep `precision`, whose float32 master
            weights the optimizer updates.
    """
    return frozen_network_policy(precision) if frozen else precision
