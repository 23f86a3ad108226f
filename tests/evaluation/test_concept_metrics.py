import math

import pytest

from studio.evaluation.concept_metrics import attribute_accuracy
from studio.evaluation.concept_metrics import class_diversity
from studio.evaluation.concept_metrics import concept_fidelity


def test_attribute_accuracy_skips_unasked_images():
    predicted = {"colour": ["red", "blue", "green"]}
    assert attribute_accuracy(predicted, ["red", "red", None], "colour") == 0.5


def test_attribute_accuracy_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="Received: 1 images and 2"):
        attribute_accuracy({"shape": ["circle"]}, ["circle", "square"], "shape")


def test_concept_fidelity_needs_every_attribute():
    predicted = {"shape": ["circle", "circle", "square", "circle"],
                 "pattern": ["striped", "plain", "striped", "striped"]}
    assert concept_fidelity(predicted, {"shape": "circle", "pattern": "striped"}) == 0.5
    assert concept_fidelity(predicted, {"shape": "circle"}) == 0.75


def test_class_diversity_is_one_for_uniform_and_zero_for_collapsed():
    colours = ["red", "green", "blue", "yellow", "purple"]
    uniform = {"colour": colours * 2, "pattern": ["plain"] * 5 + ["striped"] * 5}
    collapsed = {"colour": ["red"] * 10, "pattern": ["striped"] * 10}
    assert math.isclose(class_diversity(uniform), 1.0)
    assert class_diversity(collapsed) == 0.0
    half = {"colour": ["red"] * 5 + ["blue"] * 5, "pattern": ["plain"] * 10}
    assert 0.0 < class_diversity(half) < 1.0
