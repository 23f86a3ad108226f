"""Shared test set-up.

The Keras backend is chosen before any test module imports Keras: the
suite runs under TensorFlow unless KERAS_BACKEND says otherwise; .ci/run
runs the backend-agnostic tests again with KERAS_BACKEND=jax.
"""

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
