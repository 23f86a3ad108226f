"""`score_concept_files`: an SD-XL `{clip_l, clip_g}` embedding on tiny-shapes-xl, scored by the classifier."""

import numpy as np
import pytest

from studio.evaluation import score_concept_files
from studio.models.sdxl import SDXLBackbone
from studio.tensor_files.safetensors_writer import write_safetensors

CIRCLE = {"shape": "circle"}
IMAGES = 8


@pytest.mark.large  # ~25 s on a busy 2-core machine: three model loads, 32 images
def test_an_embedding_of_the_circle_words_rows_draws_circles(tmp_path):
    backbone = SDXLBackbone.from_preset("tiny-shapes-xl")
    token = backbone.tokenizer.encode("circle")[1]
    vectors = {
        key: np.asarray(table.embeddings.numpy())[token : token + 1]
        for key, table in backbone.token_embeddings.items()
    }
    # kohya's / A1111's SD-XL layout: one file, a tensor per encoder.
    path = str(tmp_path / "round.safetensors")
    write_safetensors(path, [(key, value.shape, lambda value=value: value)
                             for key, value in vectors.items()])
    scores = score_concept_files("tiny-shapes-xl", "<round>", embeddings=[path], concept=CIRCLE,
                                 num_images=IMAGES, names=["<round>"])
    assert scores["concept_fidelity"] >= 0.8
    # Another word's images are not counted as circles.
    assert score_concept_files("tiny-shapes-xl", "square", concept=CIRCLE,
                               num_images=IMAGES)["concept_fidelity"] <= 0.2
