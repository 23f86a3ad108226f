"""Scores for the shapes world: an attribute classifier and the metrics built on it.

`ShapesClassifier` (shipped, trained on rendered images) reads a generated
image's shape, colour, background and pattern; `ModelEvaluator` turns
that into prompt accuracy, concept fidelity, editability and class
diversity. `reference_metrics` computes CLIP-I / CLIP-T / DINO where
keras-hub and its presets can be loaded, and says they are unavailable
otherwise.

Names are imported on first use, so that `studio --help` (which imports
`studio.cli.evaluate_command`) does not import Keras.
"""

import importlib

_EXPORTS = {
    "ModelEvaluator": "studio.evaluation.model_evaluator",
    "ShapesClassifier": "studio.evaluation.shapes_classifier",
    "attribute_accuracy": "studio.evaluation.concept_metrics",
    "class_diversity": "studio.evaluation.concept_metrics",
    "concept_fidelity": "studio.evaluation.concept_metrics",
    "render_concept_set": "studio.evaluation.concept_set",
    "score_concept_files": "studio.evaluation.concept_file_scores",
    "reference_metrics_status": "studio.evaluation.reference_metrics",
    "score_comparison": "studio.evaluation.comparison_scores",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'studio.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
