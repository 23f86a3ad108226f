"""Keras callbacks of a training run: step counting, checkpoints, samples, stop requests."""
