"""Weights shipped inside the package: the `tiny-shapes` preset and its attribute classifier.

`studio train base` writes them; `StableDiffusionBackbone.from_preset("tiny-shapes")`
and `studio.evaluation.ShapesClassifier.from_package()` read them.
"""
