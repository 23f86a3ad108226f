"""Shared set-up of the embedding-file tests."""

import numpy as np
import pytest

from studio.embeddings import TextualInversionEmbedding

SD1_WIDTH = 768


@pytest.fixture
def random_vectors():
    """A function (shape, seed, extremes=False) -> float32 values with full
    mantissas; `extremes` adds values float16 cannot hold (a subnormal, 3e38)
    to catch any rounding on the way."""

    def make(shape, seed=0, extremes=False):
        values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        flat = values.reshape(-1)
        flat[:2] = [np.float32(-0.0), np.float32(-1e-7)]
        if extremes:
            flat[2:4] = [np.float32(1e-40), np.float32(3e38)]
        return values

    return make


@pytest.fixture
def cat_toy(random_vectors):
    """A one-token, two-vector SD 1.x embedding with full provenance."""
    return TextualInversionEmbedding(
        {"<cat-toy>": random_vectors((2, SD1_WIDTH))},
        base_model="sd-v1",
        base_model_hash="4789e63e07c0e54d6a34a29b45ce81ece27060c499a709d556c7755b42bb0dc4",
        initializer="toy",
        steps=3000,
    )
