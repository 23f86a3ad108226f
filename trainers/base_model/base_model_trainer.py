"""Pretrains the text encoder and UNet from scratch (the second half of `studio train base`)."""

import os

import keras
from keras import ops

from studio.trainers.diffusion_objective import DiffusionObjective
from studio.trainers.run.last_value import LastValue


class BaseModelTrainer(keras.Model):
    """Trains a backbone's text encoder and UNet together on image/caption batches.

    The VAE is frozen (trained before, by `VAETrainer`). Each step samples
    latents from the batch's VAE moments, noises them with the backbone's
    `DiffusionObjective`, and regresses the UNet's prediction, with the
    caption's context from the text encoder, which learns along.

    Args:
        backbone: a `studio.models.StableDiffusionBackbone`.
        min_snr_gamma: float or None (see `DiffusionObjective`).
        seed: int or None, of the noise and timestep draws.
        **kwargs: `keras.Model` arguments.

    Call arguments:
        inputs: dict with `"token_ids"` and `"moments"` (or `"images"` in
            `[-1, 1]`, encoded by the frozen VAE every step).

    Returns:
        `(prediction, target, weights)`, as `TextualInversionTrainer`.
    """

    def __init__(self, backbone, min_snr_gamma=None, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.backbone = backbone
        self.min_snr_gamma = min_snr_gamma
        self.seed = seed
        backbone.vae_encoder.trainable = False
        backbone.vae_decoder.trainable = False
        self.text_encoder = backbone.text_encoder
        self.unet = backbone.unet
        self.vae_encoder = backbone.vae_encoder
        self.objective = DiffusionObjective.from_backbone(backbone, min_snr_gamma=min_snr_gamma)
        self.seed_generator = keras.random.SeedGenerator(seed, name="noise_seed")
        self.step_loss = LastValue(name="step_loss")

    def call(self, inputs, training=False):
        if "moments" in inputs:
            moments = inputs["moments"]
        else:
            moments = self.vae_encoder(inputs["images"], training=False)
        latents = self.objective.sample_latents(moments, self.seed_generator)
        noisy, timesteps, target, weights = self.objective.noisy_latents(
            latents, self.seed_generator
        )
        context = self.text_encoder(inputs["token_ids"], training=training)
        prediction = self.unet(
            {"latents": noisy, "timesteps": timesteps, "context": context}, training=training
        )
        return ops.cast(prediction, "float32"), target, weights

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        prediction, target, weights = y_pred
        loss = self.objective.loss(prediction, target, weights)
        self.step_loss.update_state(loss)
        return loss

    def save_results(self, folder, step):
        """Writes the text encoder's and UNet's weights into `folder` (for `TrainingRun`)."""
        for name in ("text_encoder", "unet"):
            getattr(self.backbone, name).save_weights(
                os.path.join(folder, f"{name}.weights.h5")
            )

    def get_config(self):
        return {"name": self.name, "min_snr_gamma": self.min_snr_gamma, "seed": self.seed}
