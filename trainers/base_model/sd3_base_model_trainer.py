"""Pretrains an SD3 backbone's MMDiT from scratch with flow matching (`studio train base-sd3`)."""

import os

from studio.trainers.base_model.base_model_trainer import BaseModelTrainer

# The file of the trained MMDiT in a run folder and a saved model.
MMDIT_WEIGHTS_FILE = "mmdit.weights.h5"


class SD3BaseModelTrainer(BaseModelTrainer):
    """Trains an `SD3Backbone`'s MMDiT on image/caption batches; CLIP-L/G and the VAE stay frozen.

    As SD3 was trained: the text encoders are fixed (here tiny-shapes'
    encoder re-expressed), the VAE was fitted before (`SD3VAETrainer`);
    each step is `BaseModelTrainer`'s (latents sampled from the batch's VAE
    moments, noised by the backbone's `FlowMatchingObjective`, logit-normal
    timesteps by default, and the MMDiT's velocity regressed under the
    caption's conditioning). Empty captions in the batches teach the
    unconditional prediction classifier-free guidance needs.

    Args:
        backbone: a `studio.models.sd3.SD3Backbone`.
        seed: int or None, of the noise and timestep draws.
        **objective_options: `FlowMatchingObjective` options
            (`weighting_scheme`, ...).

    Call arguments:
        inputs: dict with `"token_ids"` and `"moments"` (or `"latents"`, or
            `"images"` in `[-1, 1]`).

    Returns:
        `(prediction, target, weights)`.
    """

    def __init__(self, backbone, seed=None, **objective_options):
        super().__init__(backbone, seed=seed, objective_options=objective_options)

    def _track_trained_networks(self, backbone):
        """Freezes CLIP-L/G and the VAE and tracks the networks, the MMDiT trainable.

        Tracked in this order: the frozen networks are the model's
        non-trainable variables, the MMDiT's its trainable ones (the order
        checkpoints save).
        """
        self.backbone = backbone
        for network in (backbone.clip_l, backbone.clip_g, backbone.vae):
            network.trainable = False
        self.clip_l = backbone.clip_l
        self.clip_g = backbone.clip_g
        self.vae = backbone.vae
        self.mmdit = backbone.mmdit
        self.mmdit.trainable = True

    # keras-hub's functional MMDiT reports a float32 policy whatever its
    # layers', so the precision is read off one of its blocks.
    @property
    def precision(self):
        compute_dtype = self.mmdit.joint_blocks[0].dtype_policy.compute_dtype
        return "float32" if compute_dtype == "float32" else f"mixed_{compute_dtype}"

    @property
    def weights_dtype(self):
        return self.mmdit.joint_blocks[0].dtype_policy.variable_dtype

    def save_results(self, folder, step):
        """Writes the MMDiT's weights into `folder` (for `TrainingRun`)."""
        self.mmdit.save_weights(os.path.join(folder, MMDIT_WEIGHTS_FILE))

    def get_config(self):
        return {"name": self.name, "seed": self.seed}
