"""The Compare page's scores on shapes-world grids: prompts obeyed, what rows show."""

import numpy as np
import pytest

from studio.datasets.shapes_world import ShapesWorld
from studio.evaluation.comparison_scores import asked_attributes, score_comparison

pytestmark = pytest.mark.tensorflow_only


def _renders(count, seed, **attributes):
    world, rng = ShapesWorld(32), np.random.default_rng(seed)
    return np.stack([world.render(world.random_scene(rng, **attributes)) for _ in range(count)])


def test_prompt_words_become_asked_attributes():
    assert asked_attributes("a green <cross> on a white background") == {
        "colour": "green", "background": "white"}
    assert asked_attributes("A red circle, on a gray background") == {
        "colour": "red", "shape": "circle", "background": "gray"}
    assert asked_attributes("a photo of <my-concept>") == {}


def test_rows_that_obey_their_prompts_score_higher():
    red_circles = _renders(4, 0, shape="circle", colour="red", background="white")
    images = {"obeys": red_circles, "ignores": red_circles, "says nothing": red_circles}
    prompts = {
        "obeys": ["a red circle on a white background"] * 4,
        "ignores": ["a green square on a black background"] * 4,
        "says nothing": ["a photo of <thing>"] * 4,
    }
    reference = _renders(3, 1, shape="circle", colour="red")
    scores = score_comparison(images, prompts, reference, model="tiny-shapes")
    assert scores["obeys"]["prompt accuracy"] == 1.0
    assert scores["ignores"]["prompt accuracy"] == 0.0
    assert "prompt accuracy" not in scores["says nothing"]
    assert scores["obeys"]["reads as"] == "red circle (4/4)"
    assert scores["obeys"]["like the references"] == 1.0

    squares = _renders(4, 2, shape="square", colour="blue")
    other = score_comparison({"squares": squares}, {"squares": ["a square"] * 4}, reference,
                             model="tiny-shapes")
    assert other["squares"]["like the references"] == 0.0
    assert other["squares"]["reads as"] == "blue square (4/4)"


def test_no_scores_for_models_of_other_worlds():
    images = {"base": _renders(2, 0)}
    prompts = {"base": ["a circle"] * 2}
    assert score_comparison(images, prompts, model="tiny") is None
    assert score_comparison({"base": np.zeros((2, 64, 64, 3), "uint8")}, prompts) is None


def test_a_prompt_per_image_is_required():
    with pytest.raises(ValueError, match="one prompt per image"):
        score_comparison({"base": _renders(2, 0)}, {"base": ["a circle"]}, model="tiny-shapes")
