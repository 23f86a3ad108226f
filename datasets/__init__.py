"""tf.data pipelines of image/prompt pairs (installed as `studio.datasets`)."""
