"""Pretrains the text encoder and UNet from scratch (the second half of `studio train base`)."""

import os

from keras import ops

from studio.trainers.diffusion_trainer import DiffusionTrainer


class BaseModelTrainer(DiffusionTrainer):
    """Trains a backbone's text encoder(s) and UNet together on image/caption batches.

    The VAE is frozen (trained before, by `VAETrainer`). Each step samples
    latents from the batch's VAE moments, noises them with the backbone's
    objective (`DDPMObjective`), and regresses the UNet's prediction, with the
    caption's context from the text encoder, which learns along.

    Args:
        backbone: a `studio.models.StableDiffusionBackbone` or `SDXLBackbone`
            (both its text encoders train, and the UNet reads SDXL's whole
            conditioning: context, pooled text, size ids).
        min_snr_gamma: float or None (see `DDPMObjective`).
        seed: int or None, of the noise and timestep draws.
        objective_options: dict or None, more options of the backbone's
            objective (`SD3BaseModelTrainer`: flow matching's weighting).
        **kwargs: `keras.Model` arguments.

    Call arguments:
        inputs: dict with `"token_ids"` and `"moments"` (or `"images"` in
            `[-1, 1]`, encoded by the frozen VAE every step, or `"latents"`).

    Returns:
        `(prediction, target, weights)`, as `TextualInversionTrainer`.
    """

    def __init__(self, backbone, min_snr_gamma=None, seed=None, objective_options=None, **kwargs):
        super().__init__(**kwargs)
        self.min_snr_gamma = min_snr_gamma
        self.seed = seed
        self._track_trained_networks(backbone)
        options = dict(objective_options or {})
        if min_snr_gamma is not None:
            options["min_snr_gamma"] = min_snr_gamma
        self._start_training_state(seed, **options)

    def _track_trained_networks(self, backbone):
        """Freezes the VAE and tracks the rest, text encoders included (SDXL's second one too)."""
        backbone.vae_encoder.trainable = False
        backbone.vae_decoder.trainable = False
        self._track_backbone(backbone)

    def call(self, inputs, training=False):
        latents = self._clean_latents(inputs)
        noisy, timesteps, target, weights = self.objective.noisy_latents(
            latents, self.seed_generator
        )
        conditioning = self.backbone.encode_text(inputs["token_ids"], training=training)
        prediction = self.backbone.denoise(noisy, timesteps, conditioning, training=training)
        return ops.cast(prediction, "float32"), target, weights

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        prediction, target, weights = y_pred
        loss = self.objective.loss(prediction, target, weights)
        self.step_loss.update_state(loss)
        return loss

    def save_results(self, folder, step):
        """Writes the text encoders' and UNet's weights into `folder` (for `TrainingRun`)."""
        for name in trained_networks(self.backbone):
            getattr(self.backbone, name).save_weights(
                os.path.join(folder, f"{name}.weights.h5")
            )

    def get_config(self):
        return {"name": self.name, "min_snr_gamma": self.min_snr_gamma, "seed": self.seed}


def trained_networks(backbone):
    """The names of the networks this trainer trains: every one but the VAE's."""
    return [name for name in backbone.component_names
            if name not in ("vae_encoder", "vae_decoder")]
