import json

import numpy as np
import pytest

from studio.datasets.shapes_world import ShapesWorld
from studio.evaluation.shapes_classifier import ATTRIBUTES, ShapesClassifier
from studio.evaluation.shapes_classifier_training import classifier_examples


def test_config_round_trips_through_json():
    classifier = ShapesClassifier(width=8)
    rebuilt = ShapesClassifier(**json.loads(json.dumps(
        {k: v for k, v in classifier.get_config().items() if k in ("image_size", "width")})))
    assert rebuilt.count_params() == classifier.count_params()
    outputs = rebuilt(np.zeros((2, 32, 32, 3), "float32"))
    assert {name: tuple(out.shape) for name, out in outputs.items()} == {
        name: (2, len(classes)) for name, classes in ATTRIBUTES.items()}


def test_shipped_classifier_reads_renders_it_never_saw():
    images, _, scenes = ShapesWorld(32).sample(200, seed=12345, include_held_out=True)
    predicted = ShapesClassifier.from_package().predict_attributes(images)
    for name in ("shape", "colour", "background"):
        accuracy = np.mean([p == getattr(s, name) for p, s in zip(predicted[name], scenes)])
        assert accuracy >= 0.95, (name, accuracy)


def test_shipped_classifier_tells_the_instance_pattern():
    images, labels = classifier_examples(200, seed=777)
    predicted = ShapesClassifier.from_package().predict_attributes(
        (images * 255).round().astype(np.uint8))
    truth = [ATTRIBUTES["pattern"][i] for i in labels["pattern"]]
    assert np.mean([p == t for p, t in zip(predicted["pattern"], truth)]) >= 0.95


def test_wrong_image_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Received: shape=\(1, 64, 64, 3\)"):
        ShapesClassifier(width=8).predict_attributes(np.zeros((1, 64, 64, 3), np.uint8))
