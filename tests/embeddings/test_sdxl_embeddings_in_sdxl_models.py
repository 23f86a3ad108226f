"""SD-XL embeddings (`{"clip_l", "clip_g"}`) load into an SD-XL model's two text encoders."""

import numpy as np
import pytest
from keras import ops

from studio.embeddings.backbone_with_embeddings import backbone_with_embeddings
from studio.embeddings.textual_inversion_embedding import TextualInversionEmbedding
from studio.errors import InvalidInputError


@pytest.fixture(scope="module")
def backbone():
    from studio.interop import load_backbone

    return load_backbone("tiny-sdxl")


def _embedding(rng, rows=2, widths=(32, 64)):
    return TextualInversionEmbedding(
        {
            "clip_l": rng.standard_normal((rows, widths[0])).astype("float32"),
            "clip_g": rng.standard_normal((rows, widths[1])).astype("float32"),
        },
        architecture="sd-xl",
    )


def test_each_encoder_reads_its_own_rows_of_the_placeholder(backbone):
    embedding = _embedding(np.random.default_rng(0))
    view = backbone_with_embeddings(backbone, [embedding], names=["<fox>"])
    ids = view.tokenizer(["a photo of <fox>"])
    first_new = backbone.tokenizer.vocabulary_size
    assert {first_new, first_new + 1} <= set(ids[0].tolist())

    def joined(table, rows):
        full = np.concatenate([table.embeddings.numpy()[:first_new], rows])
        return lambda token_ids: ops.take(full, token_ids, axis=0)

    tables = backbone.token_embeddings
    expected = backbone.encode_text(
        ids, token_lookup={key: joined(tables[key], embedding.vectors[key]) for key in tables}
    )
    actual = view.encode_text(ids)
    for name in expected:
        np.testing.assert_allclose(np.asarray(actual[name]), np.asarray(expected[name]), atol=1e-6)
    # Other vectors under the same token give other conditioning.
    other = backbone_with_embeddings(backbone, [_embedding(np.random.default_rng(1))], ["<fox>"])
    assert np.abs(np.asarray(other.encode_text(ids)["context"]) - np.asarray(actual["context"])).max() > 1e-3


def test_embeddings_that_do_not_fit_are_refused_in_one_line(backbone):
    rng = np.random.default_rng(2)
    sd = TextualInversionEmbedding({"<cat>": rng.standard_normal((1, 32)).astype("float32")})
    cases = [
        ([sd], ["<cat>"], "SD 1.x/2.x embedding"),
        ([_embedding(rng, widths=(768, 1280))], ["<fox>"], "does not fit"),
        ([_embedding(rng)], None, "does not name its token"),
        ([_embedding(rng), _embedding(rng)], ["<fox>", "<fox>"], "twice"),
    ]
    for embeddings, names, message in cases:
        with pytest.raises(InvalidInputError, match=message) as error:
            backbone_with_embeddings(backbone, embeddings, names=names)
        assert "\n" not in str(error.value)
