"""Scores of generated shapes-world images, from the classifier's predictions.

Each function takes `predicted`, the dict attribute -> list of class names
that `ShapesClassifier.predict_attributes` returns for a set of images,
and returns a float in [0, 1].
"""

import collections
import math

from studio.errors import InvalidInputError


def attribute_accuracy(predicted, expected, attribute):
    """Share of images whose `attribute` is the expected one.

    Args:
        predicted: dict attribute -> predicted names, one per image.
        expected: list of expected names, one per image (None: not asked
            for; such images are left out).
        attribute: e.g. "shape" or "colour".

    Raises:
        ValueError: lists of different lengths, or nothing to score.
    """
    values = predicted[attribute]
    if len(values) != len(expected):
        raise InvalidInputError(
            "Expected one expected value per image. Received: "
            f"{len(values)} images and {len(expected)} expected values"
        )
    pairs = [(p, e) for p, e in zip(values, expected) if e is not None]
    if not pairs:
        raise InvalidInputError(f"No image asks for a {attribute}. Received: {len(expected)} Nones")
    return sum(p == e for p, e in pairs) / len(pairs)


def concept_fidelity(predicted, concept):
    """Share of images that show the concept: every attribute of `concept` matches.

    Args:
        predicted: as above.
        concept: dict attribute -> name, e.g. `{"shape": "cross"}` for the
            unnamed concept, `{"shape": "circle", "pattern": "striped"}`
            for the DreamBooth instance.
    """
    count = len(next(iter(predicted.values())))
    if not count:
        raise InvalidInputError("No images to score. Received: 0 images")
    hits = sum(
        all(predicted[name][index] == value for name, value in concept.items())
        for index in range(count)
    )
    return hits / count


def class_diversity(predicted, attributes=("colour", "pattern")):
    """How varied a set of images is: normalised entropy of the joint `attributes`.

    1.0 when every combination of the attributes' classes appears equally
    often, 0.0 when all images share one. The maximum is the log of the
    number of combinations the images could show, capped by the image count.
    """
    keys = list(zip(*(predicted[name] for name in attributes)))
    if not keys:
        raise InvalidInputError("No images to score. Received: 0 images")
    from studio.evaluation.shapes_classifier import ATTRIBUTES

    possible = math.prod(len(ATTRIBUTES[name]) for name in attributes)
    ceiling = math.log(min(possible, len(keys)))
    if ceiling == 0:
        return 0.0
    counts = collections.Counter(keys)
    entropy = -sum(c / len(keys) * math.log(c / len(keys)) for c in counts.values())
    return entropy / ceiling
