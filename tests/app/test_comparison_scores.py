"""The Compare page's scores: the shipped classifier's reading of images the embedded model drew.

The page generates each cell with the row's pipeline and hands the grid to
`studio.app.comparison_scores.score_comparison`; here the same happens
without the page: the tiny-shapes model draws two rows, one of which
names in its prompts what the images show and one what they do not.
"""

import sys

import numpy as np
import pytest

from studio.app.comparison_scores import EVALUATION_MODULE, score_comparison

SEEDS = (1, 2, 3)
PROMPT = "a red circle on a white background"
OTHER_PROMPT = "a green triangle on a black background"


@pytest.fixture(scope="module")
def drawn(tiny_shapes_pipeline):
    """Three tiny-shapes images of `PROMPT`, generated as the Compare page does (one per seed)."""
    return np.stack([
        tiny_shapes_pipeline(PROMPT, num_steps=10, guidance_scale=7.5, seed=seed).images[0]
        for seed in SEEDS
    ])


def test_scores_read_what_the_model_drew(drawn):
    images = {"base": drawn, "mislabelled": drawn}
    prompts = {"base": [PROMPT] * len(SEEDS), "mislabelled": [OTHER_PROMPT] * len(SEEDS)}
    scores = score_comparison(images, prompts, model="tiny-shapes")
    # The images are what their prompt asks (the pipeline's tests check
    # the model and classifier agree), so the row obeys it, and the same
    # images under another prompt do not.
    assert scores["base"] == {"reads as": f"red circle ({len(SEEDS)}/{len(SEEDS)})",
                              "prompt accuracy": 1.0}
    assert scores["mislabelled"] == {"reads as": f"red circle ({len(SEEDS)}/{len(SEEDS)})",
                                     "prompt accuracy": 0.0}


def test_training_images_add_how_many_cells_look_like_them(drawn):
    red_circles, other = drawn[:2], 255 - drawn[:2]  # Inverted: cyan on black.
    prompts = {"before": ["a photo of <toy>"] * 2, "after": ["a photo of <toy>"] * 2}
    scores = score_comparison({"before": other, "after": red_circles}, prompts,
                              reference_images=drawn, model="tiny-shapes")
    assert scores["after"]["like the references"] == 1.0
    assert scores["before"]["like the references"] == 0.0
    assert "prompt accuracy" not in scores["after"]  # The prompt names no attribute.


def test_no_scores_for_other_models(drawn):
    prompts = {"base": [PROMPT] * len(SEEDS)}
    assert score_comparison({"base": drawn}, prompts, model="tiny") is None
    # Without a model name the image size decides: 64 px is not the world's.
    assert score_comparison({"base": np.zeros((3, 64, 64, 3), "uint8")}, prompts) is None


def test_no_scores_when_the_install_lacks_the_evaluation_package(drawn, monkeypatch):
    # A None entry makes `import studio.evaluation` fail as a missing module does.
    monkeypatch.setitem(sys.modules, EVALUATION_MODULE, None)
    assert score_comparison({"base": drawn}, {"base": [PROMPT] * len(SEEDS)},
                            model="tiny-shapes") is None
