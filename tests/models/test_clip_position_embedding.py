"""Tests of CLIPPositionEmbedding."""

import keras
import numpy as np
import pytest

from studio.models.clip_position_embedding import CLIPPositionEmbedding


def test_adds_the_row_of_each_position_to_every_sequence():
    layer = CLIPPositionEmbedding(sequence_length=6, hidden_dim=4)
    inputs = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    outputs = keras.ops.convert_to_numpy(layer(inputs))
    table = keras.ops.convert_to_numpy(layer.embeddings)
    assert table.shape == (6, 4)
    np.testing.assert_allclose(outputs, inputs + table[None, :5], atol=1e-6)


def test_rejects_sequences_longer_than_the_table():
    layer = CLIPPositionEmbedding(sequence_length=4, hidden_dim=4)
    with pytest.raises(ValueError, match="sequence_length"):
        layer(np.zeros((1, 5, 4), "float32"))


def test_config_round_trips():
    layer = CLIPPositionEmbedding(77, 32, name="positions")
    rebuilt = CLIPPositionEmbedding.from_config(layer.get_config())
    assert rebuilt.get_config() == layer.get_config()
