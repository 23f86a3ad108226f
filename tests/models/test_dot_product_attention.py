"""The studio's attention: plain softmax attention, cuDNN's kernel only at even lengths."""

import keras
import numpy as np
import pytest

from studio.models import dot_product_attention as module


def _reference(query, key, value, is_causal):
    # (batch, length, heads, size) -> softmax(q k^T / sqrt(size)) v per head.
    logits = np.einsum("bthd,bshd->bhts", query, key) / np.sqrt(query.shape[-1])
    if is_causal:
        above = np.triu(np.ones(logits.shape[-2:], dtype=bool), k=1)
        logits = np.where(above, -np.inf, logits)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return np.einsum("bhts,bshd->bthd", weights, value)


@pytest.mark.parametrize("query_length, key_length, is_causal",
                         [(16, 77, False), (16, 16, False), (77, 77, True), (8, 8, True)])
def test_attention_is_softmax_attention_at_odd_and_even_lengths(query_length, key_length,
                                                                is_causal):
    rng = np.random.default_rng(0)
    query = rng.normal(size=(2, query_length, 3, 8)).astype("float32")
    key = rng.normal(size=(2, key_length, 3, 8)).astype("float32")
    value = rng.normal(size=(2, key_length, 3, 8)).astype("float32")
    got = module.dot_product_attention(query, key, value, is_causal=is_causal)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got),
                               _reference(query, key, value, is_causal), atol=2e-5)


@pytest.mark.parametrize("query_length, key_length, fused_allowed",
                         [(4096, 77, False), (77, 77, False), (4096, 4096, True),
                          (1024, 64, True)])
def test_jax_keeps_cudnn_fused_attention_away_from_odd_lengths(monkeypatch, query_length,
                                                               key_length, fused_allowed):
    # cuDNN's backward pass refuses odd lengths, and inside a rematerialised
    # block Keras cannot fall back (an H200 run of SD-XL DreamBooth LoRA
    # failed so); this CPU test checks what the layer asks Keras for.
    asked = {}

    def record(query, key, value, **kwargs):
        asked.update(kwargs)
        return query

    monkeypatch.setattr(module.keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(module.ops, "dot_product_attention", record)
    # As on a GPU: no CPU blocks.
    monkeypatch.setattr(module, "_blocked_on_cpu", lambda *arguments: False)
    query = np.zeros((1, query_length, 1, 8), "float32")
    key = np.zeros((1, key_length, 1, 8), "float32")
    module.dot_product_attention(query, key, key)
    assert asked["flash_attention"] is (None if fused_allowed else False)


jax_only = pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's CPU path")


@jax_only
@pytest.mark.parametrize("heads, block_bytes", [(3, 1), (3, 4 * 24 * 40 * 2), (1, 2**30)])
def test_jax_cpu_blocks_are_softmax_attention_with_its_gradients(monkeypatch, heads,
                                                                block_bytes):
    import jax

    # Small lengths stand in for SD's 1024 tokens: blocks of one head, of
    # two (6 rows: 2 images x 3 heads), and of all rows at once.
    monkeypatch.setattr(module, "CPU_BLOCKED_MIN_SCORES", 1)
    monkeypatch.setattr(module, "CPU_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(1)
    query = rng.normal(size=(2, 24, heads, 8)).astype("float32")
    key = rng.normal(size=(2, 40, heads, 8)).astype("float32")
    value = rng.normal(size=(2, 40, heads, 8)).astype("float32")
    assert module._blocked_on_cpu(query, key, False)
    got = module.dot_product_attention(query, key, value)
    np.testing.assert_allclose(np.asarray(got), _reference(query, key, value, False), atol=2e-5)

    upstream = rng.normal(size=query.shape).astype("float32")

    def loss(attention):
        return lambda q, k, v: (attention(q, k, v) * upstream).sum()

    ours = jax.grad(loss(module.dot_product_attention), argnums=(0, 1, 2))(query, key, value)
    expected = jax.grad(loss(jax.nn.dot_product_attention), argnums=(0, 1, 2))(
        query, key, value
    )
    for mine, theirs in zip(ours, expected):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), atol=1e-4)


@jax_only
def test_jax_cpu_blocks_only_long_float32_attention():
    long = np.zeros((1, 256, 2, 8), "float32")
    assert module._blocked_on_cpu(long, long, False)
    assert not module._blocked_on_cpu(long, long, True)
    assert not module._blocked_on_cpu(long[:, :255], long, False)
    assert not module._blocked_on_cpu(long.astype("float16"), long.astype("float16"), False)
