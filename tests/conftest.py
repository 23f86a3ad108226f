"""Shared test set-up.

The Keras backend is chosen before any test module imports Keras: the
suite runs under TensorFlow unless KERAS_BACKEND says otherwise; .ci/run
runs the backend-agnostic tests again with KERAS_BACKEND=jax.
"""

import os
import re

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# --- The README's examples ----------------------------------------------------
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


@pytest.fixture(scope="session")
def readme_python_blocks():
    """`readme_python_blocks(marker)` -> the ```python blocks right after `marker` in README.md.

    The marker (an HTML comment) appears once; the blocks follow it with
    only blank lines between them, and the first prose line ends them.
    """

    def blocks(marker):
        with open(README, encoding="utf-8") as file:
            text = file.read()
        assert text.count(marker) == 1, f"{marker} must appear once in README.md"
        rest, found = text.split(marker, 1)[1], []
        while match := re.match(r"\s*```python\n(.*?)```", rest, re.DOTALL):
            found.append(match.group(1))
            rest = rest[match.end():]
        assert found, f"no ```python block after {marker}"
        return found

    return blocks


# --- The embedded model, shared by the session ------------------------------
# Several folders generate with tiny-shapes and read the images with the
# shipped shapes classifier; loading each costs seconds, so they are loaded
# once. Tests must not change them (trainers' tests add placeholder tokens
# to their own backbone, tests/trainers/conftest.py's `tiny_backbone`).


@pytest.fixture(scope="session")
def tiny_shapes_pipeline():
    """A `TextToImagePipeline` of the embedded `tiny-shapes` model (shipped weights)."""
    from studio.models import StableDiffusionBackbone
    from studio.pipelines import TextToImagePipeline

    return TextToImagePipeline(StableDiffusionBackbone.from_preset("tiny-shapes"))


@pytest.fixture(scope="session")
def read_shapes():
    """`read(images)` -> what the shipped shapes classifier sees.

    Returns a list of (colour, shape, background), one per image.
    """
    from studio.evaluation.shapes_classifier import ShapesClassifier

    classifier = ShapesClassifier.from_package()

    def read(images):
        seen = classifier.predict_attributes(images)
        return list(zip(seen["colour"], seen["shape"], seen["background"]))

    return read
