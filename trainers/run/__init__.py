"""A training run in its folder: config, checkpoints, logs, samples, progress, summary."""
