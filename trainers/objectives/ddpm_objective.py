"""The DDPM objective (epsilon or v-prediction): what an SD 1.x / 2.x training step regresses."""

import keras
from keras import ops

from studio.models.latent_distribution import sample_latents
from studio.schedulers import NoiseSchedule
from studio.trainers.distributed.replica_context import draw_replica_rows

# `DiffusionBackbone.objective["type"]` of the backbones trained with it.
DDPM_OBJECTIVE = "ddpm"


class DDPMObjective:
    """Noises latents and scores the UNet's prediction, as Stable Diffusion was trained.

    Shared by the trainers: it holds no variables, and takes the caller's
    `keras.random.SeedGenerator` for every random draw, so the caller's
    checkpoint holds the random state. Only `keras.ops` are used: it runs
    inside a compiled train step on any backend. In a data-parallel
    TensorFlow step each replica draws for the whole global batch and keeps
    its own rows (`replica_context.draw_replica_rows`), so every example
    gets the noise and timestep it would get on one device.

    The loss follows the model's prediction type: the target is the noise
    for `"epsilon"` and `sqrt(a) * noise - sqrt(1 - a) * x0` for
    `"v_prediction"`.

    Args:
        prediction_type: `"epsilon"` or `"v_prediction"`.
        latent_scale: float. Factor from VAE latents to the UNet's latents.
        noise_schedule: dict of `studio.schedulers.NoiseSchedule` arguments
            (without `prediction_type`), as `backbone.noise_schedule`.
        min_snr_gamma: float or None. Min-SNR weighting (Hang et al., 2023):
            each example's loss is weighted by `min(snr, gamma) / snr`
            (epsilon) or `min(snr, gamma) / (snr + 1)` (v); 5.0 is the
            paper's value. None weights every timestep alike.
        offset_noise: float >= 0. Adds `offset_noise` times one normal
            draw per example and channel to the noise (Guttenberg, 2023),
            which lets the model learn very dark or bright images. 0 turns
            it off.

    Example:

    ```python
    objective = DDPMObjective("epsilon", 0.18215, backbone.noise_schedule)
    latents = objective.sample_latents(moments, seed_generator)
    noisy, timesteps, target, weights = objective.noisy_latents(latents, seed_generator)
    loss = objective.loss(unet(...), target, weights)
    ```
    """

    def __init__(
        self,
        prediction_type="epsilon",
        latent_scale=0.18215,
        noise_schedule=None,
        min_snr_gamma=None,
        offset_noise=0.0,
    ):
        if min_snr_gamma is not None and not min_snr_gamma > 0:
            raise ValueError(
                "`min_snr_gamma` must be None or a positive number (5.0 is usual). "
                f"Received: min_snr_gamma={min_snr_gamma!r}"
            )
        if not offset_noise >= 0:
            raise ValueError(
                "`offset_noise` must be >= 0 (0.05 to 0.1 is usual; 0 turns it off). "
                f"Received: offset_noise={offset_noise!r}"
            )
        self.prediction_type = prediction_type
        self.latent_scale = float(latent_scale)
        self.noise_schedule = dict(noise_schedule or {})
        self.min_snr_gamma = None if min_snr_gamma is None else float(min_snr_gamma)
        self.offset_noise = float(offset_noise)
        # Raises for an unknown prediction type or schedule.
        self.schedule = NoiseSchedule(**self.noise_schedule, prediction_type=prediction_type)

    @classmethod
    def from_backbone(cls, backbone, min_snr_gamma=None, offset_noise=0.0):
        """The objective a backbone was trained with (its `objective` data)."""
        data = dict(backbone.objective)
        if data.pop("type") != DDPM_OBJECTIVE:
            raise ValueError(
                f"The backbone was not trained with the DDPM objective. Received: "
                f"objective={backbone.objective!r}"
            )
        return cls(**data, min_snr_gamma=min_snr_gamma, offset_noise=offset_noise)

    def sample_latents(self, moments, seed):
        """Draws scaled latents from VAE moments (mean, then log-variance).

        Args:
            moments: float tensor `(batch, h, w, 2 * channels)`, as the VAE
                encoder returns and the latent cache stores.
            seed: a `keras.random.SeedGenerator`.

        Returns:
            float32 latents `(batch, h, w, channels)`, times `latent_scale`.
        """
        return sample_latents(moments, self.latent_noise(seed), self.latent_scale)

    @staticmethod
    def latent_noise(seed):
        """The draw `backbone.sample_latents` takes: normal noise, this replica's rows.

        Args:
            seed: a `keras.random.SeedGenerator`.

        Returns:
            A function `shape -> float32 tensor`.
        """
        return lambda shape: draw_replica_rows(
            lambda s: keras.random.normal(s, seed=seed), shape
        )

    def noisy_latents(self, latents, seed):
        """Draws timesteps and noise, and returns what the UNet sees and must predict.

        Args:
            latents: float32 clean latents `(batch, h, w, channels)`, scaled.
            seed: a `keras.random.SeedGenerator`.

        Returns:
            `(noisy_latents, timesteps, target, weights)`: the noised
            latents, int32 timesteps `(batch,)` drawn uniformly, the
            regression target, and float32 loss weights `(batch,)`.
        """
        latents = ops.cast(latents, "float32")
        shape = ops.shape(latents)
        batch_size, channels = shape[0], shape[-1]
        noise = draw_replica_rows(lambda s: keras.random.normal(s, seed=seed), shape)
        if self.offset_noise:
            noise = noise + self.offset_noise * draw_replica_rows(
                lambda s: keras.random.normal(s, seed=seed), (batch_size, 1, 1, channels)
            )
        timesteps = draw_replica_rows(
            lambda s: keras.random.randint(
                s, 0, self.schedule.num_train_timesteps, dtype="int32", seed=seed
            ),
            (batch_size,),
        )
        noisy = self.schedule.add_noise(latents, noise, timesteps)
        target = self.schedule.training_target(latents, noise, timesteps)
        return noisy, timesteps, target, self.loss_weights(timesteps)

    def loss_weights(self, timesteps):
        """Per-example loss weights: min-SNR weights, or ones.

        Args:
            timesteps: int tensor `(batch,)`.

        Returns:
            float32 tensor `(batch,)`.
        """
        if self.min_snr_gamma is None:
            return ops.ones(ops.shape(timesteps), "float32")
        snr = self.schedule.snr(timesteps)
        clipped = ops.minimum(snr, self.min_snr_gamma)
        if self.prediction_type == "v_prediction":
            # The v target already weighs each timestep by snr + 1 relative
            # to epsilon; divide that out to get min-SNR weighting.
            return clipped / (snr + 1.0)
        return clipped / snr

    @staticmethod
    def loss(prediction, target, weights):
        """Weighted mean squared error, in float32.

        Args:
            prediction: the UNet's output `(batch, h, w, channels)`.
            target: the regression target, same shape.
            weights: float `(batch,)`.

        Returns:
            A float32 scalar: the mean over examples of weight times the
            example's mean squared error.
        """
        error = ops.square(ops.cast(prediction, "float32") - ops.cast(target, "float32"))
        per_example = ops.mean(ops.reshape(error, (ops.shape(error)[0], -1)), axis=-1)
        return ops.mean(per_example * ops.cast(weights, "float32"))

    def get_config(self):
        return {
            "prediction_type": self.prediction_type,
            "latent_scale": self.latent_scale,
            "noise_schedule": dict(self.noise_schedule),
            "min_snr_gamma": self.min_snr_gamma,
            "offset_noise": self.offset_noise,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
