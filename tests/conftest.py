"""Shared test set-up.

The Keras backend is chosen before any test module imports Keras: the
suite runs under TensorFlow unless KERAS_BACKEND says otherwise;
tests/test_jax_backend.py re-runs the backend-agnostic tests under JAX.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
