"""SDXL's added conditioning: pooled text and micro-conditioning ids -> a time-embedding term."""

import keras
from keras import ops

from studio.models.unet_timestep_embedding import UNetTimestepEmbedding


@keras.saving.register_keras_serializable(package="studio")
class UNetAddedConditioning(keras.layers.Layer):
    """Embeds the pooled text vector and the size/crop ids, to add to the time embedding.

    Each of the `num_time_ids` ids (SDXL: original height and width, crop
    top and left, target height and width) gets the sinusoidal features of
    `UNetTimestepEmbedding` (`time_ids_dim` of them, cosines first, as
    diffusers' `Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0)`);
    they are flattened, put after the pooled text vector, and go through
    dense, SiLU, dense (diffusers' `add_embedding`, SGM's `label_emb`).

    Args:
        units: int. Width of the output (the UNet's time-embedding width).
        time_ids_dim: int, even. Sinusoidal features per id (256 in SDXL).
        num_time_ids: int. Ids per sample (6 in SDXL base).
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        text_embeds: float tensor `(batch, pooled_dim)`.
        time_ids: float or int tensor `(batch, num_time_ids)`.

    Returns:
        A tensor `(batch, units)`.
    """

    def __init__(self, units, time_ids_dim, num_time_ids, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.time_ids_dim = time_ids_dim
        self.num_time_ids = num_time_ids
        self.time_ids_embedding = UNetTimestepEmbedding(time_ids_dim, dtype=self.dtype_policy)
        self.dense_in = keras.layers.Dense(units, dtype=self.dtype_policy)
        self.dense_out = keras.layers.Dense(units, dtype=self.dtype_policy)

    def build(self, text_embeds_shape, time_ids_shape):
        features = text_embeds_shape[-1] + self.num_time_ids * self.time_ids_dim
        self.dense_in.build((text_embeds_shape[0], features))
        self.dense_out.build((text_embeds_shape[0], self.units))

    def call(self, text_embeds, time_ids):
        batch = ops.shape(time_ids)[0]
        features = self.time_ids_embedding(ops.reshape(time_ids, (-1,)))
        features = ops.reshape(features, (batch, self.num_time_ids * self.time_ids_dim))
        x = ops.concatenate([ops.cast(text_embeds, features.dtype), features], axis=-1)
        x = self.dense_in(x)
        return self.dense_out(keras.activations.silu(x))

    def compute_output_shape(self, text_embeds_shape, time_ids_shape):
        return (text_embeds_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "time_ids_dim": self.time_ids_dim,
                "num_time_ids": self.num_time_ids,
            }
        )
        return config
