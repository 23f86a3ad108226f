"""Attention of the studio's own layers, with cuDNN's fused kernel only where it trains."""

import keras
from keras import ops


def dot_product_attention(query, key, value, is_causal=False):
    """`keras.ops.dot_product_attention` on `(batch, length, heads, size)` tensors.

    Under JAX on an Ampere-or-newer GPU, Keras picks cuDNN's fused (flash)
    attention after checking the shapes for inference only. cuDNN's backward
    pass refuses odd sequence lengths (JAX 0.11.2 on an H200: "Unsupported
    sequence length Q 4096, KV 77" for the UNet's cross-attention on a
    77-token prompt). Without rematerialisation Keras catches that while
    tracing the gradient and falls back; inside a rematerialised block the
    check runs again when the backward pass recomputes the block, outside
    Keras' fallback, and the training step fails. So odd lengths get XLA's
    attention (a 4096 x 77 cross-attention gains little from the fused
    kernel) and even ones keep Keras' choice. Other backends are unchanged.
    """
    flash_attention = None
    lengths = (query.shape[1], key.shape[1])
    if keras.backend.backend() == "jax" and any(
        isinstance(length, int) and length % 2 for length in lengths
    ):
        flash_attention = False
    return ops.dot_product_attention(
        query, key, value, is_causal=is_causal, flash_attention=flash_attention
    )
