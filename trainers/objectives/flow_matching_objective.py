"""The flow-matching (rectified flow) objective of Stable Diffusion 3, as diffusers trains it."""

import math

import keras
from keras import ops

from studio.models.latent_distribution import sample_latents

# `DiffusionBackbone.objective["type"]` of the backbones trained with it (SD3).
from studio.models.sd3.sd3_backbone import FLOW_MATCHING_OBJECTIVE
from studio.trainers.distributed.replica_context import draw_replica_rows
from studio.trainers.settings.weighting_scheme import WEIGHTING_SCHEMES


class FlowMatchingObjective:
    """Noises latents along straight paths and scores the velocity, as SD3 was trained.

    `noisy = (1 - sigma) * x0 + sigma * noise`; the MMDiT predicts the
    velocity, whose target is `noise - x0`. Timesteps are drawn as in
    diffusers' SD3 training script: a density `u` in [0, 1)
    (`timestep_density`), the training schedule's index `floor(u * N)`, and
    that index's shifted sigma (`FlowMatchEulerDiscreteScheduler`'s
    `sigmas`); the denoiser sees `sigma * N`.

    The preconditioned form (`precondition_outputs`, the script's
    default) scores `x0_hat = noisy - sigma * prediction` against `x0`.
    Since `noisy - x0 = sigma * (noise - x0)`, its error is exactly `sigma**2`
    times the velocity error, so the objective keeps the velocity target and
    multiplies the weights by `sigma**2`: the trainers' `loss(prediction,
    target, weights)` serves both forms.

    Stateless like `DDPMObjective`: every draw comes from the caller's
    `keras.random.SeedGenerator`, each replica drawing the global batch and
    keeping its rows.

    Args:
        num_train_timesteps: int, N of the training schedule (1000).
        shift: float, the schedule's sigma shift (SD3: 3.0).
        latent_scale, latent_shift: VAE latents -> denoiser latents,
            `(z - latent_shift) * latent_scale`.
        weighting_scheme: one of `WEIGHTING_SCHEMES` (diffusers' default
            "logit_normal").
        logit_mean, logit_std: the logit-normal density's parameters.
        mode_scale: the "mode" density's scale (diffusers: 1.29).
        precondition_outputs: score the preconditioned x0 (diffusers'
            `--precondition_outputs 1`) instead of the velocity.
    """

    def __init__(
        self,
        num_train_timesteps=1000,
        shift=3.0,
        latent_scale=1.5305,
        latent_shift=0.0609,
        weighting_scheme="logit_normal",
        logit_mean=0.0,
        logit_std=1.0,
        mode_scale=1.29,
        precondition_outputs=False,
    ):
        if weighting_scheme not in WEIGHTING_SCHEMES:
            raise ValueError(
                f"`weighting_scheme` must be one of {WEIGHTING_SCHEMES} (diffusers' names). "
                f"Received: weighting_scheme={weighting_scheme!r}"
            )
        if not shift > 0:
            raise ValueError(f"`shift` must be > 0 (SD3: 3.0). Received: shift={shift!r}")
        self.num_train_timesteps = int(num_train_timesteps)
        self.shift = float(shift)
        self.latent_scale = float(latent_scale)
        self.latent_shift = float(latent_shift)
        self.weighting_scheme = weighting_scheme
        self.logit_mean = float(logit_mean)
        self.logit_std = float(logit_std)
        self.mode_scale = float(mode_scale)
        self.precondition_outputs = bool(precondition_outputs)

    @classmethod
    def from_backbone(cls, backbone, min_snr_gamma=None, offset_noise=0.0, **options):
        """The objective a backbone was trained with; `options` are the density and weighting."""
        data = dict(backbone.objective)
        if data.pop("type") != FLOW_MATCHING_OBJECTIVE:
            raise ValueError(
                "The backbone was not trained with flow matching. Received: "
                f"objective={backbone.objective!r}"
            )
        if min_snr_gamma is not None or offset_noise:
            raise ValueError(
                "`min_snr_gamma` and `offset_noise` are DDPM options; flow matching "
                "weights timesteps with `weighting_scheme`. Received: "
                f"min_snr_gamma={min_snr_gamma!r}, offset_noise={offset_noise!r}"
            )
        return cls(**data, **options)

    # --- Latents -----------------------------------------------------------

    def sample_latents(self, moments, seed):
        """Draws denoiser latents `(z - latent_shift) * latent_scale` from VAE moments."""
        latents = sample_latents(moments, self.latent_noise(seed))
        return (latents - self.latent_shift) * self.latent_scale

    @staticmethod
    def latent_noise(seed):
        """Normal noise for the VAE sample (this replica's rows): a function shape -> tensor."""
        return lambda shape: draw_replica_rows(
            lambda s: keras.random.normal(s, seed=seed), shape
        )

    # --- Timesteps and weights ---------------------------------------------

    def timestep_density(self, draw):
        """diffusers' `compute_density_for_timestep_sampling`, from the caller's draw.

        Args:
            draw: float `(batch,)`: standard normal for "logit_normal",
                uniform in [0, 1) for every other scheme.

        Returns:
            float32 `u` `(batch,)`.
        """
        draw = ops.cast(draw, "float32")
        if self.weighting_scheme == "logit_normal":
            return ops.sigmoid(self.logit_mean + self.logit_std * draw)
        if self.weighting_scheme == "mode":
            return 1.0 - draw - self.mode_scale * (ops.cos(math.pi * draw / 2.0) ** 2 - 1.0 + draw)
        return draw

    def sigmas(self, u):
        """The training schedule's shifted sigma at index `floor(u * N)`.

        diffusers' `FlowMatchEulerDiscreteScheduler` (set up for training)
        holds `sigmas[i] = shift * s / (1 + (shift - 1) * s)` with
        `s = (N - i) / N`; the script indexes it with `(u * N).long()`.
        """
        n = self.num_train_timesteps
        index = ops.clip(ops.floor(ops.cast(u, "float32") * n), 0, n - 1)
        s = (n - index) / n
        return self.shift * s / (1.0 + (self.shift - 1.0) * s)

    def loss_weights(self, sigmas):
        """diffusers' `compute_loss_weighting_for_sd3`, times `sigma**2` when preconditioned."""
        sigmas = ops.cast(sigmas, "float32")
        if self.weighting_scheme == "sigma_sqrt":
            weights = sigmas**-2.0
        elif self.weighting_scheme == "cosmap":
            weights = 2.0 / (math.pi * (1.0 - 2.0 * sigmas + 2.0 * sigmas**2))
        else:
            weights = ops.ones_like(sigmas)
        if self.precondition_outputs:
            weights = weights * ops.square(sigmas)
        return weights

    def noisy_latents(self, latents, seed):
        """Noised latents, the denoiser's timesteps, the target and the loss weights.

        Args:
            latents: float `(batch, h, w, channels)`, clean denoiser latents.
            seed: a `keras.random.SeedGenerator`.

        Returns:
            `(noisy, timesteps, target, weights)`: `timesteps` float32
            `sigma * N` `(batch,)`; `target` `noise - x0`; `weights` `(batch,)`.
        """
        latents = ops.cast(latents, "float32")
        shape = ops.shape(latents)
        noise = draw_replica_rows(lambda s: keras.random.normal(s, seed=seed), shape)
        if self.weighting_scheme == "logit_normal":
            draw = keras.random.normal
        else:
            draw = keras.random.uniform
        u = self.timestep_density(
            draw_replica_rows(lambda s: draw(s, seed=seed), (shape[0],))
        )
        sigmas = self.sigmas(u)
        noisy, target = self.noise(latents, noise, sigmas)
        return noisy, sigmas * self.num_train_timesteps, target, self.loss_weights(sigmas)

    @staticmethod
    def noise(latents, noise, sigmas):
        """`(1 - sigma) * x0 + sigma * noise` and the velocity target `noise - x0`."""
        sigma = ops.reshape(ops.cast(sigmas, "float32"), (-1, 1, 1, 1))
        return (1.0 - sigma) * latents + sigma * noise, noise - latents

    @staticmethod
    def loss(prediction, target, weights):
        """The mean over examples of weight times the example's mean squared error (float32)."""
        error = ops.square(ops.cast(prediction, "float32") - ops.cast(target, "float32"))
        per_example = ops.mean(ops.reshape(error, (ops.shape(error)[0], -1)), axis=-1)
        return ops.mean(per_example * ops.cast(weights, "float32"))

    def get_config(self):
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "shift": self.shift,
            "latent_scale": self.latent_scale,
            "latent_shift": self.latent_shift,
            "weighting_scheme": self.weighting_scheme,
            "logit_mean": self.logit_mean,
            "logit_std": self.logit_std,
            "mode_scale": self.mode_scale,
            "precondition_outputs": self.precondition_outputs,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
