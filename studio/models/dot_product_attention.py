"""Attention of the studio's own layers: cuDNN's fused kernel only where it trains, blocks on a CPU."""

import math

import keras
from keras import ops

# Under JAX on a CPU, attention whose (query length x key length) reaches
# this is computed in blocks of heads (`_blocked_attention`).
CPU_BLOCKED_MIN_SCORES = 256 * 256
# The scores of one block, in bytes: about what stays in a core's cache.
CPU_BLOCK_BYTES = 4 * 2**20


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

    Under JAX on a CPU, float32 attention with at least
    `CPU_BLOCKED_MIN_SCORES` scores per head is computed a few heads at a
    time (`_blocked_attention`): XLA:CPU's attention over all heads at once
    (score tensors of hundreds of MiB) was 4x slower than TensorFlow's.
    """
    if _blocked_on_cpu(query, key, is_causal):
        return _blocked_attention(query, key, value)
    flash_attention = None
    lengths = (query.shape[1], key.shape[1])
    if keras.backend.backend() == "jax" and any(
        isinstance(length, int) and length % 2 for length in lengths
    ):
        flash_attention = False
    return ops.dot_product_attention(
        query, key, value, is_causal=is_causal, flash_attention=flash_attention
    )


def _blocked_on_cpu(query, key, is_causal):
    if keras.backend.backend() != "jax" or is_causal:
        return False
    lengths = (query.shape[1], key.shape[1])
    if not all(isinstance(length, int) for length in lengths + (query.shape[0], query.shape[2])):
        return False
    if lengths[0] * lengths[1] < CPU_BLOCKED_MIN_SCORES:
        return False
    if keras.backend.standardize_dtype(query.dtype) != "float32":
        return False
    import jax

    return jax.default_backend() == "cpu"


def _blocked_attention(query, key, value):
    """Softmax attention over (batch x heads) in sequential blocks, under JAX.

    Written our own way for speed (JAX on a CPU): with one block's scores
    (`CPU_BLOCK_BYTES`) in cache, SD's 1024-token self-attention at batch
    8 (CFG on 4 images, 8 heads) took 94-106 ms instead of 398-454 ms for
    `jax.nn.dot_product_attention`, and 4096 tokens at batch 2 657 ms
    instead of 1847 ms (2 cores). Equal to float rounding (1e-6).
    """
    import jax

    batch, query_length, heads, size = query.shape
    key_length = key.shape[1]
    rows = batch * heads
    per_head = query_length * key_length * 4
    block = max(1, min(rows, CPU_BLOCK_BYTES // per_head))
    while rows % block:
        block -= 1

    def by_head(tensor, length, transpose_last=False):
        tensor = ops.transpose(tensor, (0, 2, 3, 1) if transpose_last else (0, 2, 1, 3))
        shape = (size, length) if transpose_last else (length, size)
        return ops.reshape(tensor, (rows // block, block) + shape)

    queries = by_head(query * (1.0 / math.sqrt(size)), query_length)
    keys = by_head(key, key_length, transpose_last=True)
    values = by_head(value, key_length)

    def attend(arguments):
        block_queries, block_keys, block_values = arguments
        scores = ops.matmul(block_queries, block_keys)
        weights = ops.exp(scores - ops.max(scores, axis=-1, keepdims=True))
        attended = ops.matmul(weights, block_values)
        return attended / ops.sum(weights, axis=-1, keepdims=True)

    attended = jax.lax.map(attend, (queries, keys, values))
    attended = ops.reshape(attended, (batch, heads, query_length, size))
    return ops.transpose(attended, (0, 2, 1, 3))
