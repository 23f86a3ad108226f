"""Fits keras-hub's VAE (`VAEBackbone`) to the shapes world: the first phase of `studio train base-sd3`."""

import os

from studio.trainers.base_model.vae_trainer import VAETrainer

# The file of the trained VAE in a run folder and a saved model.
VAE_WEIGHTS_FILE = "vae.weights.h5"


class SD3VAETrainer(VAETrainer):
    """`VAETrainer` on keras-hub's `VAEBackbone`, whose encoder and decoder are layers.

    The loss and the latent sampling are `VAETrainer`'s (keras-hub's
    encoder also returns the mean, then the log-variance); only the
    results differ: the whole `VAEBackbone` is saved, since keras-hub's
    encoder and decoder layers have no weight files of their own.

    Args:
        vae: a `keras_hub` `VAEBackbone` (`SD3Backbone.vae`).
        **kwargs: `VAETrainer` arguments (`kl_weight`, `seed`, ...).
    """

    def __init__(self, vae, **kwargs):
        super().__init__(vae.encoder, vae.decoder, **kwargs)
        self.vae = vae

    def save_results(self, folder, step):
        """Writes the VAE's weights into `folder` (for `TrainingRun`)."""
        self.vae.save_weights(os.path.join(folder, VAE_WEIGHTS_FILE))
