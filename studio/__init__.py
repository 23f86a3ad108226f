"""Keras fine-tuning studio for Stable Diffusion.

Importing `studio` is cheap: it imports neither Keras nor TensorFlow. Import
the part you need (`studio.models`, `studio.pipelines`, `studio.trainers`, ...).
"""

__version__ = "0.1.0"
