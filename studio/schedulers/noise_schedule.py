"""The forward diffusion process of Stable Diffusion: betas, alphas, targets."""

import keras
import numpy as np
from keras import ops

BETA_SCHEDULES = ("linear", "scaled_linear")
PREDICTION_TYPES = ("epsilon", "v_prediction")


class NoiseSchedule:
    """The DDPM noise schedule a UNet was trained with.

    `alphas_cumprod[t]` is the fraction of signal variance left at timestep
    `t`: `x_t = sqrt(alphas_cumprod[t]) * x_0 + sqrt(1 - alphas_cumprod[t]) *
    noise`. Training code draws `x_t` with `add_noise` and regresses the UNet
    on `training_target`; the samplers in this package use the same table.

    The tables are NumPy float64; the tensor methods gather from them with
    `keras.ops`, so `timesteps` may be a traced tensor inside a compiled
    train step.

    Args:
        num_train_timesteps: int. Number of diffusion steps in training.
        beta_start: float. Noise variance added at the first step.
        beta_end: float. Noise variance added at the last step.
        beta_schedule: `"scaled_linear"` (Stable Diffusion: betas whose
            square roots are evenly spaced) or `"linear"` (evenly spaced
            betas, as in DDPM).
        prediction_type: what the UNet predicts, `"epsilon"` (the noise) or
            `"v_prediction"` (`v = sqrt(a) * noise - sqrt(1 - a) * x_0`).

    Raises:
        ValueError: if an argument is out of its range.

    Example:

    ```python
    schedule = NoiseSchedule()
    noisy = schedule.add_noise(latents, noise, timesteps)
    loss = mean_squared_error(schedule.training_target(latents, noise, timesteps),
                              unet(noisy, timesteps, context))
    ```
    """

    def __init__(
        self,
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
    ):
        if int(num_train_timesteps) != num_train_timesteps or num_train_timesteps < 1:
            raise ValueError(
                "`num_train_timesteps` must be a positive integer. "
                f"Received: num_train_timesteps={num_train_timesteps}"
            )
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(
                "Expected 0 < beta_start <= beta_end < 1. Received: "
                f"beta_start={beta_start}, beta_end={beta_end}"
            )
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"`beta_schedule` must be one of {BETA_SCHEDULES}. "
                f"Received: beta_schedule={beta_schedule!r}"
            )
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"`prediction_type` must be one of {PREDICTION_TYPES}. "
                f"Received: prediction_type={prediction_type!r}"
            )
        self.num_train_timesteps = int(num_train_timesteps)
        self.beta_start = beta_start
        self.beta_end = beta_end
        self.beta_schedule = beta_schedule
        self.prediction_type = prediction_type

        if beta_schedule == "linear":
            betas = np.linspace(beta_start, beta_end, self.num_train_timesteps)
        else:
            betas = (
                np.linspace(beta_start**0.5, beta_end**0.5, self.num_train_timesteps)
                ** 2
            )
        self.betas = betas.astype(np.float64)
        self.alphas_cumprod = np.cumprod(1.0 - self.betas)

    def get_config(self):
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "beta_schedule": self.beta_schedule,
            "prediction_type": self.prediction_type,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def add_noise(self, original_samples, noise, timesteps):
        """Draws `x_t ~ q(x_t | x_0)`: `sqrt(a) * x_0 + sqrt(1 - a) * noise`.

        Args:
            original_samples: clean samples `x_0`, shape `(batch, ...)`.
            noise: standard normal noise, same shape.
            timesteps: int, or int tensor of shape `(batch,)`.

        Returns:
            The noisy samples, in the dtype of `original_samples`.
        """
        samples, noise, dtype = self._prepare(original_samples, noise)
        signal = self._gather(np.sqrt(self.alphas_cumprod), timesteps, samples)
        noise_level = self._gather(np.sqrt(1.0 - self.alphas_cumprod), timesteps, samples)
        return ops.cast(signal * samples + noise_level * noise, dtype)

    def get_velocity(self, sample, noise, timesteps):
        """The v-prediction target `sqrt(a) * noise - sqrt(1 - a) * x_0`.

        Args:
            sample: clean samples `x_0`, shape `(batch, ...)`.
            noise: the noise that `add_noise` mixed in, same shape.
            timesteps: int, or int tensor of shape `(batch,)`.

        Returns:
            `v`, in the dtype of `sample`.
        """
        samples, noise, dtype = self._prepare(sample, noise)
        signal = self._gather(np.sqrt(self.alphas_cumprod), timesteps, samples)
        noise_level = self._gather(np.sqrt(1.0 - self.alphas_cumprod), timesteps, samples)
        return ops.cast(signal * noise - noise_level * samples, dtype)

    def training_target(self, sample, noise, timesteps):
        """What the UNet should output for `add_noise(sample, noise, timesteps)`.

        Args:
            sample: clean samples `x_0`, shape `(batch, ...)`.
            noise: the noise that `add_noise` mixed in, same shape.
            timesteps: int, or int tensor of shape `(batch,)`.

        Returns:
            `noise` for `"epsilon"`, `get_velocity(...)` for `"v_prediction"`,
            in the dtype of `sample`.
        """
        if self.prediction_type == "v_prediction":
            return self.get_velocity(sample, noise, timesteps)
        dtype = keras.backend.standardize_dtype(ops.convert_to_tensor(sample).dtype)
        return ops.cast(noise, dtype)

    def snr(self, timesteps):
        """Signal-to-noise ratio `a / (1 - a)` at `timesteps` (for min-SNR weighting).

        Args:
            timesteps: int, or int tensor of shape `(batch,)`.

        Returns:
            A float32 tensor with the shape of `timesteps`.
        """
        ratio = self.alphas_cumprod / (1.0 - self.alphas_cumprod)
        return ops.take(
            ops.convert_to_tensor(ratio, "float32"), ops.cast(timesteps, "int32")
        )

    @staticmethod
    def _prepare(samples, noise):
        samples = ops.convert_to_tensor(samples)
        dtype = keras.backend.standardize_dtype(samples.dtype)
        # float16 square roots of alphas would be off in the third digit.
        compute_dtype = keras.backend.result_type(dtype, "float32")
        samples = ops.cast(samples, compute_dtype)
        noise = ops.cast(noise, compute_dtype)
        return samples, noise, dtype

    @staticmethod
    def _gather(table, timesteps, like):
        """`table[timesteps]`, shaped to broadcast against `like` (batch first)."""
        values = ops.take(
            ops.convert_to_tensor(table, keras.backend.standardize_dtype(like.dtype)),
            ops.cast(timesteps, "int32"),
        )
        for _ in range(len(like.shape) - len(values.shape)):
            values = ops.expand_dims(values, -1)
        return values
