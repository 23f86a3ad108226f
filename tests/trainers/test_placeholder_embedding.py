"""Tests of PlaceholderEmbedding, the joined frozen/trainable token lookup (any backend)."""

import keras
import numpy as np
import pytest

from studio.embeddings.placeholder_embedding import PlaceholderEmbedding

ROWS, DIM = 12, 4
FIRST_NEW_ID = 10  # Rows 10 and 11 of the table exist but are never read.


def make_layer(output_dtype="float32", num_new=3):
    table = keras.layers.Embedding(ROWS, DIM, trainable=False)
    table.build()
    table.embeddings.assign(np.arange(ROWS * DIM, dtype="float32").reshape(ROWS, DIM))
    initial = -np.arange(1, num_new * DIM + 1, dtype="float32").reshape(num_new, DIM)
    return PlaceholderEmbedding(table, FIRST_NEW_ID, initial, output_dtype=output_dtype), initial


def test_old_ids_read_the_table_and_new_ids_the_new_vectors():
    layer, initial = make_layer()
    ids = np.array([[0, 9, 10, 11, 12, 3]], "int32")
    vectors = keras.ops.convert_to_numpy(layer(ids))[0]
    table = keras.ops.convert_to_numpy(layer.token_embedding.embeddings)
    np.testing.assert_array_equal(vectors[0], table[0])
    np.testing.assert_array_equal(vectors[1], table[9])
    np.testing.assert_array_equal(vectors[2:5], initial)
    np.testing.assert_array_equal(vectors[5], table[3])


def test_only_the_new_vectors_are_trainable_and_float32():
    layer, _ = make_layer(output_dtype="float16")
    assert [tuple(v.shape) for v in layer.trainable_variables] == [(3, DIM)]
    assert layer.new_vectors.dtype == "float32"
    output = layer(np.array([[1, 10]], "int32"))
    assert keras.backend.standardize_dtype(output.dtype) == "float16"


def test_shares_the_table_instead_of_copying_it():
    layer, _ = make_layer()
    layer.token_embedding.embeddings.assign(np.zeros((ROWS, DIM), "float32"))
    vectors = keras.ops.convert_to_numpy(layer(np.array([[2]], "int32")))
    np.testing.assert_array_equal(vectors, np.zeros((1, 1, DIM)))


@pytest.mark.parametrize(
    "first_new_id, initial, message",
    [
        (0, np.zeros((1, DIM)), "first_new_id"),
        (ROWS + 1, np.zeros((1, DIM)), "first_new_id"),
        (FIRST_NEW_ID, np.zeros((1, DIM + 1)), "wide"),
        (FIRST_NEW_ID, np.zeros((0, DIM)), "num_new"),
    ],
)
def test_rejects_bad_arguments(first_new_id, initial, message):
    table = keras.layers.Embedding(ROWS, DIM)
    table.build()
    with pytest.raises(ValueError, match=message):
        PlaceholderEmbedding(table, first_new_id, initial)
