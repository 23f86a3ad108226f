"""Shared test set-up.

The Keras backend is chosen before any test module imports Keras: the
suite runs under TensorFlow unless KERAS_BACKEND says otherwise; .ci/run
runs the backend-agnostic tests again with KERAS_BACKEND=jax.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
