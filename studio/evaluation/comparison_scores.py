"""Scores of a comparison grid (the app's Compare page) on the shapes-world model.

Each grid row is a set of images generated with the same weights
(base, an embedding, a checkpoint, a LoRA) from the columns' prompts. The
shipped classifier reads every image; a row's scores say how well the
images obey their prompts and what they show, so rows can be compared by
number as well as by eye.
"""

import collections

import numpy as np

from studio.datasets.shapes_world import ShapesWorld

# Attribute -> the words of a prompt that ask for it. A colour word counts
# as a colour unless it names the background ("on a black background").
_SHAPE_WORDS = set(ShapesWorld.NAMED_SHAPES)
_COLOUR_WORDS = set(ShapesWorld.COLOURS)
_BACKGROUND_WORDS = set(ShapesWorld.BACKGROUNDS)


def asked_attributes(prompt):
    """The attributes a shapes-world prompt names: dict attribute -> name.

    "a green <cross> on a white background" -> `{"colour": "green",
    "background": "white"}`; words the world does not know are ignored.
    """
    words = prompt.lower().replace(",", " ").split()
    asked = {}
    for index, word in enumerate(words):
        names_background = (index + 1 < len(words) and words[index + 1] == "background"
                            and index > 0 and words[index - 1] in ("a", "an", "the"))
        if names_background and word in _BACKGROUND_WORDS:
            asked["background"] = word
        elif word in _COLOUR_WORDS:
            asked["colour"] = word
        elif word in _SHAPE_WORDS:
            asked["shape"] = word
    return asked


def applies_to(model):
    """True when `model` (a preset name) is a shapes-world model (its tokenizer is the world's).

    The image size is checked separately, against the classifier's.
    """
    from studio.models.presets import BACKBONE_PRESETS

    spec = BACKBONE_PRESETS.get(model) or {}
    return (spec.get("tokenizer") or {}).get("type") == "shapes_world"


def score_comparison(images, prompts, reference_images=None, model=None, classifier=None):
    """Per-row scores of a comparison grid, or None where they do not apply.

    Args:
        images: dict row label -> uint8 array `(columns, size, size, 3)`.
        prompts: dict row label -> the prompt of each column (list of str).
        reference_images: None, or uint8 images of the concept (a run's
            training images); adds how many of a row's images show what
            those show.
        model: the preset the grid was generated with; scores apply to
            shapes-world models (`tiny-shapes`), None for others (the
            shapes classifier would read noise). None: decided from the
            image size alone.
        classifier: a `ShapesClassifier` (default: the shipped one).

    Returns:
        None, or dict row label -> dict with `prompt accuracy` (share of
        images that show every attribute their prompt names; left out
        when no prompt names one), `reads as` (the most common "colour shape" the
        classifier sees, with its count), and with reference images
        `like the references` (share showing the references' most common
        shape, colour and pattern).
    """
    from studio.evaluation.shapes_classifier import ShapesClassifier

    if model is not None and not applies_to(model):
        return None
    classifier = classifier or ShapesClassifier.from_package()
    size = classifier.image_size
    if any(np.asarray(cells).shape[1:3] != (size, size) for cells in images.values()):
        return None
    concept = None
    if reference_images is not None and len(reference_images):
        concept = _most_common_scene(classifier.predict_attributes(reference_images))
    scores = {}
    for label, cells in images.items():
        predicted = classifier.predict_attributes(np.asarray(cells, "uint8"))
        row_prompts = prompts[label]
        if len(row_prompts) != len(cells):
            raise ValueError(
                f"Expected one prompt per image of row {label!r}. Received: "
                f"{len(cells)} images and {len(row_prompts)} prompts"
            )
        obeyed = []
        for index, prompt in enumerate(row_prompts):
            asked = asked_attributes(prompt)
            if asked:
                obeyed.append(all(predicted[name][index] == value for name, value in asked.items()))
        reads = collections.Counter(
            f"{colour} {shape}" for colour, shape in zip(predicted["colour"], predicted["shape"])
        )
        (common, count), = reads.most_common(1)
        row = {"reads as": f"{common} ({count}/{len(cells)})"}
        if obeyed:
            row["prompt accuracy"] = float(np.mean(obeyed))
        if concept is not None:
            row["like the references"] = float(np.mean([
                all(predicted[name][index] == value for name, value in concept.items())
                for index in range(len(cells))
            ]))
        scores[label] = row
    return scores


def _most_common_scene(predicted):
    return {
        name: collections.Counter(predicted[name]).most_common(1)[0][0]
        for name in ("shape", "colour", "pattern")
    }
