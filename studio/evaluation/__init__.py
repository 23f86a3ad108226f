"""Scores for the shapes world: an attribute classifier and the metrics built on it.

`ShapesClassifier` (shipped, trained on rendered images) reads a generated
image's shape, colour, background and pattern; `ModelEvaluator` turns
that into prompt accuracy, concept fidelity, editability and class
diversity. `reference_metrics` computes CLIP-I / CLIP-T / DINO where
keras-hub and its presets can be loaded, and says they are unavailable
otherwise.
"""

from studio.evaluation.concept_metrics import attribute_accuracy
from studio.evaluation.concept_metrics import class_diversity
from studio.evaluation.concept_metrics import concept_fidelity
from studio.evaluation.model_evaluator import ModelEvaluator
from studio.evaluation.reference_metrics import reference_metrics_status
from studio.evaluation.shapes_classifier import ShapesClassifier

__all__ = [
    "ModelEvaluator",
    "ShapesClassifier",
    "attribute_accuracy",
    "class_diversity",
    "concept_fidelity",
    "reference_metrics_status",
]
