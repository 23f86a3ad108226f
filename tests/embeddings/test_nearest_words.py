"""Nearest vocabulary words of learned vectors."""

import numpy as np
import pytest

from studio.embeddings import nearest_words
from studio.tokenizers import CLIPTokenizer

WIDTH = 16


@pytest.fixture
def tokenizer():
    return CLIPTokenizer.byte_level()


@pytest.fixture
def table(tokenizer):
    return np.random.default_rng(0).standard_normal((tokenizer.vocabulary_size, WIDTH)).astype(np.float32)


def _brute_force(vector, table, k):
    """Cosine similarity, one row at a time, in float64."""
    scores = []
    for index, row in enumerate(table.astype(np.float64)):
        scores.append((float(vector @ row / np.linalg.norm(vector) / np.linalg.norm(row)), index))
    return sorted(scores, reverse=True)[:k]


def test_a_vocabulary_vector_finds_its_own_word_first(tokenizer, table):
    cat = tokenizer.token_to_id("c</w>")
    result = nearest_words(3.0 * table[cat], table, tokenizer, k=5)
    assert len(result) == 1 and len(result[0]) == 5
    assert result[0][0][0] == "c</w>"
    assert result[0][0][1] == pytest.approx(1.0, abs=1e-5)
    opposite = nearest_words(-table[cat], table, tokenizer, k=5)[0]
    assert "c</w>" not in [token for token, _ in opposite]


def test_matches_a_brute_force_ranking(tokenizer, table):
    vectors = np.random.default_rng(1).standard_normal((3, WIDTH)).astype(np.float32)
    result = nearest_words(vectors, table, tokenizer, k=4)
    for vector, words in zip(vectors.astype(np.float64), result):
        expected = _brute_force(vector, table, 4)
        assert [token for token, _ in words] == [tokenizer.id_to_token(i) for _, i in expected]
        np.testing.assert_allclose([s for _, s in words], [s for s, _ in expected], atol=1e-5)


def test_keras_token_embedding_table(tokenizer):
    keras = pytest.importorskip("keras")
    layer = keras.layers.Embedding(tokenizer.vocabulary_size, WIDTH)
    layer.build((None,))
    table = keras.ops.convert_to_numpy(layer.embeddings)
    word = tokenizer.token_to_id("z</w>")
    assert nearest_words(table[word], table, tokenizer, k=1)[0][0][0] == "z</w>"


def test_rows_past_the_vocabulary_are_skipped(tokenizer, table):
    padded = np.concatenate([table, np.ones((6, WIDTH), np.float32)])
    result = nearest_words(np.ones(WIDTH), padded, tokenizer, k=3)[0]
    assert len(result) == 3  # No error: ids past the vocabulary were not looked up.


def test_k_larger_than_the_vocabulary(tokenizer, table):
    small = table[:4]
    assert len(nearest_words(table[0], small, tokenizer, k=50)[0]) == 4


def test_zero_vector_has_zero_similarity(tokenizer, table):
    result = nearest_words(np.zeros(WIDTH), table, tokenizer, k=2)[0]
    assert [similarity for _, similarity in result] == [0.0, 0.0]


@pytest.mark.parametrize(
    "vectors, k, message",
    [
        (np.zeros((1, WIDTH + 1)), 3, "same width"),
        (np.zeros((1, 2, WIDTH)), 3, "same width"),
        (np.zeros((1, WIDTH)), 0, "positive int"),
        (np.zeros((1, WIDTH)), True, "positive int"),
    ],
)
def test_invalid_input(tokenizer, table, vectors, k, message):
    with pytest.raises(ValueError, match=message):
        nearest_words(vectors, table, tokenizer, k=k)
