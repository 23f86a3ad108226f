"""Sinusoidal embedding of diffusion timesteps, the UNet's first time layer."""

import math

import keras
from keras import ops

# Longest period of the sinusoids, in timesteps; Stable Diffusion's value.
DEFAULT_MAX_PERIOD = 10000


@keras.saving.register_keras_serializable(package="studio")
class UNetTimestepEmbedding(keras.layers.Layer):
    """Maps diffusion timesteps to fixed sinusoidal features (no weights).

    Feature `i < embedding_dim / 2` is `cos(t * f_i)` and feature
    `i + embedding_dim / 2` is `sin(t * f_i)`, with
    `f_i = exp(-log(max_period) * i / (embedding_dim / 2))`: the same
    formula, in the same order of operations, as KerasCV's
    `StableDiffusion._get_timestep_embedding`, so weights trained with
    KerasCV's embedding see the same features.

    The sinusoids are computed in float32 whatever the dtype policy: in
    float16, the angles `t * f_i` of late timesteps would be off by up to
    0.2 radians.

    Args:
        embedding_dim: int, even. Number of features.
        max_period: float. Longest period of the sinusoids.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        timesteps: int or float tensor of shape `(batch,)`.

    Returns:
        A tensor of shape `(batch, embedding_dim)` in the compute dtype.

    Raises:
        ValueError: if `embedding_dim` is not a positive even number.
    """

    def __init__(self, embedding_dim, max_period=DEFAULT_MAX_PERIOD, **kwargs):
        # Float timesteps must not be rounded to a float16 compute dtype.
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        if embedding_dim <= 0 or embedding_dim % 2:
            raise ValueError(
                "`embedding_dim` must be a positive even number (half cosines, "
                f"half sines). Received: embedding_dim={embedding_dim}"
            )
        self.embedding_dim = embedding_dim
        self.max_period = max_period
        # No weights. Built from the start: Keras' JAX `predict_on_batch`
        # runs the whole model eagerly once first if any layer of it is not.
        self.built = True

    def call(self, timesteps):
        half = self.embedding_dim // 2
        indices = ops.cast(ops.arange(0, half), "float32")
        frequencies = ops.exp(-math.log(self.max_period) * indices / half)
        timesteps = ops.cast(timesteps, "float32")
        angles = timesteps[:, None] * frequencies[None, :]
        embedding = ops.concatenate([ops.cos(angles), ops.sin(angles)], axis=-1)
        return ops.cast(embedding, self.compute_dtype)

    def compute_output_shape(self, timesteps_shape):
        return (timesteps_shape[0], self.embedding_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"embedding_dim": self.embedding_dim, "max_period": self.max_period}
        )
        return config
