"""Trains a VAE encoder and decoder from scratch (the first half of `studio train base`)."""

import os

import keras
from keras import ops

from studio.models.latent_distribution import reparameterize, split_moments
from studio.trainers.run.last_value import LastValue

# Weight of the KL term against the per-pixel squared error: small, as in
# Stable Diffusion's KL-f8 autoencoder, so latents keep the detail; the
# latent scale is measured afterwards instead.
DEFAULT_KL_WEIGHT = 1e-4


class VAETrainer(keras.Model):
    """Fits a `VAEEncoder` / `VAEDecoder` pair to reconstruct images.

    The loss is the mean squared error of the reconstruction (images in
    `[-1, 1]`) plus `kl_weight` times the mean KL divergence of the latent
    distribution from a unit normal. Latents are sampled with the
    reparameterisation trick from the trainer's `seed_generator`, whose
    state checkpoints save.

    Args:
        vae_encoder: a `studio.models.VAEEncoder` (trained).
        vae_decoder: a `studio.models.VAEDecoder` (trained).
        kl_weight: float >= 0.
        seed: int or None, of the latent sampling.
        **kwargs: `keras.Model` arguments.

    Call arguments:
        inputs: dict with `"images"`, float `(batch, h, w, 3)` in `[-1, 1]`.

    Returns:
        `(reconstruction, images, kl)`.
    """

    def __init__(self, vae_encoder, vae_decoder, kl_weight=DEFAULT_KL_WEIGHT, seed=None,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not kl_weight >= 0:
            raise ValueError(f"`kl_weight` must be >= 0. Received: kl_weight={kl_weight!r}")
        self.vae_encoder = vae_encoder
        self.vae_decoder = vae_decoder
        self.kl_weight = float(kl_weight)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="latent_seed")
        self.step_loss = LastValue(name="step_loss")

    def call(self, inputs, training=False):
        images = ops.cast(inputs["images"], "float32")
        moments = self.vae_encoder(images, training=training)
        mean, log_variance = split_moments(moments)
        noise = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
        latents = reparameterize(mean, log_variance, noise)
        reconstruction = self.vae_decoder(latents, training=training)
        kl = 0.5 * ops.mean(ops.square(mean) + ops.exp(log_variance) - 1.0 - log_variance)
        return ops.cast(reconstruction, "float32"), images, kl

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        reconstruction, images, kl = y_pred
        loss = ops.mean(ops.square(reconstruction - images)) + self.kl_weight * kl
        self.step_loss.update_state(loss)
        return loss

    def save_results(self, folder, step):
        """Writes the two networks' weights into `folder` (for `TrainingRun`)."""
        for network in (self.vae_encoder, self.vae_decoder):
            network.save_weights(os.path.join(folder, f"{network.name}.weights.h5"))

    def get_config(self):
        return {"name": self.name, "kl_weight": self.kl_weight, "seed": self.seed}
