"""Stable Diffusion 3 / 3.5: keras-hub's networks behind the studio's seam.

Importing this package does not import keras_hub (which imports TensorFlow
under every backend): `SD3Backbone` imports it only when it builds or loads
networks, so `import studio.models` stays TensorFlow-free under JAX.
"""

from studio.models.sd3.sd3_backbone import SD3Backbone

__all__ = ["SD3Backbone"]
