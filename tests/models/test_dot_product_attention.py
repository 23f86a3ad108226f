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
    query = np.zeros((1, query_length, 1, 8), "float32")
    key = np.zeros((1, key_length, 1, 8), "float32")
    module.dot_product_attention(query, key, key)
    assert asked["flash_attention"] is (None if fused_allowed else False)
