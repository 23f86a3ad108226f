"""The Compare page's X/Y plot: `{concept}` becomes each cell's embedding tokens."""

import numpy as np

from studio.app.concept_grid import ConceptGrid
from studio.embeddings import TextualInversionEmbedding, save_embedding
from studio.grids import GridAxis
from studio.pipelines import GenerationSettings


def _embedding(folder, token):
    path = folder / f"{token.strip('<>')}.safetensors"
    save_embedding(TextualInversionEmbedding({token: np.ones((1, 8), "float32")}), str(path))
    return str(path)


def test_concept_becomes_each_cell_s_tokens_or_the_plain_words(tmp_path):
    cat, dog = _embedding(tmp_path, "<cat>"), _embedding(tmp_path, "<dog>")
    grid = ConceptGrid(GenerationSettings("a photo of {concept}", model="tiny-shapes", seed=1),
                       GridAxis("embedding", ["none", cat, dog]), GridAxis("cfg", [3, 7]),
                       plain_words="a shape")
    cells = [grid.cell_settings(x, y) for y in range(2) for x in range(3)]
    assert [cell.prompt for cell in cells] == [
        "a photo of a shape", "a photo of <cat>", "a photo of <dog>"] * 2
    assert [cell.embeddings for cell in cells[:3]] == [(), (cat,), (dog,)]
    assert [cell.guidance_scale for cell in cells[::3]] == [3.0, 7.0]


def test_a_prompt_without_the_field_is_kept_and_the_row_s_embedding_counts(tmp_path):
    cat = _embedding(tmp_path, "<cat>")
    settings = GenerationSettings("{concept} on a beach", model="tiny-shapes", seed=1,
                                  embeddings=(cat,))
    grid = ConceptGrid(settings, GridAxis("seed", [1, 2]))
    assert [grid.cell_settings(x).prompt for x in range(2)] == ["<cat> on a beach"] * 2
    plain = ConceptGrid(GenerationSettings("a red circle", model="tiny-shapes"),
                        GridAxis("seed", [1]), plain_words="ignored")
    assert plain.cell_settings(0).prompt == "a red circle"
