"""The embedding data class: checks its input, keeps its dtype."""

import json
import subprocess
import sys

import numpy as np
import pytest

from studio.embeddings import TextualInversionEmbedding


def test_shapes_and_properties(random_vectors):
    embedding = TextualInversionEmbedding(
        {"<a>": random_vectors((2, 32)), "<b>": random_vectors(32)}
    )
    assert embedding.placeholders == ["<a>", "<b>"]
    assert embedding.num_vectors == {"<a>": 2, "<b>": 1}  # A 1-D array is one vector.
    assert embedding.text_encoder_width == 32
    assert embedding.dtype == "float32" and embedding.format is None
    norms = embedding.vector_norms()
    np.testing.assert_allclose(
        norms["<a>"], np.sqrt((embedding.vectors["<a>"].astype(np.float64) ** 2).sum(-1))
    )


def test_float16_stays_float16_and_mixed_becomes_float32(random_vectors):
    half = random_vectors((2, 8)).astype(np.float16)
    embedding = TextualInversionEmbedding({"<a>": half})
    assert embedding.dtype == "float16" and embedding.vectors["<a>"].dtype == np.float16
    mixed = TextualInversionEmbedding({"<a>": half, "<b>": random_vectors((1, 8))})
    assert mixed.dtype == "float32"
    assert {v.dtype for v in mixed.vectors.values()} == {np.dtype(np.float32)}
    np.testing.assert_array_equal(mixed.vectors["<a>"], half.astype(np.float32))


def test_select_and_renamed_keep_provenance(random_vectors):
    embedding = TextualInversionEmbedding(
        {"<a>": random_vectors((2, 8)), "<b>": random_vectors((1, 8), 1)},
        base_model="sd-v1", steps=10,
    )
    selected = embedding.select("<b>")
    assert selected.placeholders == ["<b>"] and selected.steps == 10
    renamed = selected.renamed("<c>")
    assert renamed.placeholders == ["<c>"] and renamed.base_model == "sd-v1"
    np.testing.assert_array_equal(renamed.vectors["<c>"], embedding.vectors["<b>"])
    with pytest.raises(ValueError, match=r"Received: placeholders \['<a>', '<b>'\]"):
        embedding.renamed("<c>")
    with pytest.raises(ValueError, match="Received: placeholder='<z>'"):
        embedding.select("<z>")


def test_get_config_is_json(random_vectors):
    embedding = TextualInversionEmbedding(
        {"<a>": random_vectors((2, 8))}, initializer="toy", metadata={"k": "v"}
    )
    config = json.loads(json.dumps(embedding.get_config()))
    rebuilt = TextualInversionEmbedding(embedding.vectors, **config)
    assert rebuilt.get_config() == embedding.get_config()


@pytest.mark.parametrize(
    "vectors, kwargs, message",
    [
        ({}, {}, "non-empty dict"),
        ({"<a>": np.zeros((2, 3, 4))}, {}, "shape \\(num_vectors, width\\)"),
        ({"<a>": np.zeros((0, 8))}, {}, "shape \\(num_vectors, width\\)"),
        ({"<a>": np.zeros((1, 8), np.int32)}, {}, "must be floats"),
        ({"<a>": np.zeros((1, 8)), "<b>": np.zeros((1, 9))}, {}, "same width"),
        ({"": np.zeros((1, 8))}, {}, "non-empty strings"),
        ({"<a>": np.zeros((1, 8))}, {"steps": -1}, "non-negative int"),
        ({"<a>": np.zeros((1, 8))}, {"architecture": "flux"}, "`architecture` must be"),
        ({"<a>": np.zeros((1, 8))}, {"architecture": "sd-xl"}, "SD-XL vectors must be keyed"),
    ],
)
def test_invalid_input(vectors, kwargs, message):
    with pytest.raises(ValueError, match=message):
        TextualInversionEmbedding(vectors, **kwargs)


def test_importing_the_package_imports_neither_keras_nor_torch():
    code = (
        "import sys, studio.embeddings, studio.cli.embeddings_command\n"
        "bad = [m for m in ('keras', 'tensorflow', 'torch', 'jax') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
