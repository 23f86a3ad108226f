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


def test_augmentations_keep_flat_images_flat_and_move_edges():
    from studio.evaluation.shapes_classifier_training import _blur, _warp

    rng = np.random.default_rng(0)
    flat = np.full((3, 32, 32, 3), 0.25, np.float32)
    np.testing.assert_allclose(_blur(flat, np.array([0.3, 0.8, 1.2])), flat, atol=1e-6)
    np.testing.assert_allclose(_warp(flat, rng), flat, atol=1e-6)

    # A vertical edge: the blur spreads it by the image's own sigma; the warp bends it.
    edge = np.zeros((2, 32, 32, 3), np.float32)
    edge[:, :, 16:] = 1.0
    blurred = _blur(edge, np.array([0.3, 1.2]))
    assert blurred[0, 10, 15, 0] < blurred[1, 10, 15, 0] < 0.5 < blurred[1, 10, 16, 0]
    np.testing.assert_allclose(blurred.sum(axis=2), edge.sum(axis=2), atol=1e-4)
    warped = _warp(edge, rng)
    columns = (warped[..., 0] > 0.5).argmax(axis=2)  # first bright column, per row
    assert not np.array_equal(warped, edge)
    assert np.abs(columns - 16).max() <= 2
