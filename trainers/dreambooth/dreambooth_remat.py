"""Rematerialisation of the UNet's blocks: recompute activations instead of keeping them."""

import functools
import re

import keras

# Our UNet's residual and transformer blocks (see `studio.models.UNet`).
UNET_BLOCK_PATTERN = re.compile(r"(down\d+|mid|up\d+)_(resnet\d+|attention\d*)")
# Set on a rematerialised layer so that a second call does not wrap it twice.
_REMAT_MARK = "_studio_rematerialized"


def rematerialize_unet_blocks(unet):
    """Makes every residual and transformer block of `unet` recompute its activations in the backward pass.

    A training step then keeps only each block's inputs for the backward
    pass, and recomputes what happens inside a block when its gradient is
    needed: about one more forward pass of compute for a large cut in
    activation memory (`jax.checkpoint` under JAX, `tf.recompute_grad`
    under TensorFlow, through `keras.remat`).

    Keras' `RematScope` marks layers when they are created; the backbone's
    UNet exists already, so each block's `call` is wrapped with
    `keras.remat` instead, which is what `RematScope(mode="list_of_layers")`
    does for the layers it names. Outputs are unchanged; inference
    outside a gradient computation costs nothing more.

    Args:
        unet: a `studio.models.UNet`.

    Returns:
        The names of the rematerialised blocks (already wrapped ones
        included, so a second call changes nothing).
    """
    names = []
    for layer in unet.layers:
        if not UNET_BLOCK_PATTERN.fullmatch(layer.name):
            continue
        if not getattr(layer, _REMAT_MARK, False):
            # An instance attribute shadows the class's `call`; Keras'
            # `Layer.__call__` looks `call` up on the instance.
            layer.call = _rematerialized(layer.call)
            object.__setattr__(layer, _REMAT_MARK, True)
        names.append(layer.name)
    return names


def _rematerialized(call):
    """`call`, recomputed in the backward pass; traced anew at every call.

    `jax.checkpoint` caches its trace by function, and a layer's bound
    `call` compares equal across calls: a cached trace would keep the
    weights it first saw as constants (a model built eagerly would then
    train with frozen blocks and zero gradients). A new `partial` per
    call is a new function, so the weights are read where it is traced.
    """

    @functools.wraps(call)
    def rematerialized_call(*args, **kwargs):
        return keras.remat(functools.partial(call))(*args, **kwargs)

    return rematerialized_call
