"""Compatibility checks before an embedding is loaded into a text encoder."""

import os

import numpy as np
import pytest

from studio.embeddings import TextualInversionEmbedding, check_compatible, load_embedding

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
HASH_A = "a" * 64
HASH_B = "b" * 64


def _embedding(width, base_model_hash=""):
    return TextualInversionEmbedding(
        {"<a>": np.ones((1, width), np.float32)}, base_model="sd-v1", base_model_hash=base_model_hash
    )


def test_width_mismatch_names_both_widths():
    with pytest.raises(ValueError, match=r"768 \(SD 1\.x.*1024 \(SD 2\.x") as info:
        check_compatible(_embedding(768), 1024)
    assert "Received: embedding width 768, text_encoder_width=1024" in str(info.value)


def test_same_width_same_or_unknown_hash_has_no_warning():
    assert check_compatible(_embedding(768, HASH_A), 768, HASH_A) == []
    assert check_compatible(_embedding(768, HASH_A), 768) == []
    assert check_compatible(_embedding(768), 768, HASH_A) == []


def test_other_weights_warn():
    warnings = check_compatible(_embedding(768, HASH_A), 768, HASH_B)
    assert len(warnings) == 1
    assert "other text-encoder weights (sd-v1)" in warnings[0]
    assert HASH_A[:12] in warnings[0] and HASH_B[:12] in warnings[0]


def test_sdxl_cannot_be_loaded():
    embedding = load_embedding(os.path.join(FIXTURES, "sdxl.safetensors"))
    with pytest.raises(ValueError, match="SD-XL embedding.*cannot be loaded into an SD 1.x/2.x"):
        check_compatible(embedding, 8)
