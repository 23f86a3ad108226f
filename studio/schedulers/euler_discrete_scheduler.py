"""Euler sampling of the probability-flow ODE (Karras et al. 2022), and Euler a."""

import keras
import numpy as np
from keras import ops

from studio.schedulers.scheduler import Scheduler
from studio.schedulers.step_table import make_step_table


class EulerDiscreteScheduler(Scheduler):
    """Euler steps in sigma space, as k-diffusion and diffusers.

    The sample is `x = x_0 + sigma * epsilon` with
    `sigma(t) = sqrt((1 - a_t) / a_t)` (`a` is `alphas_cumprod`), so the
    UNet sees `x / sqrt(sigma**2 + 1)` (`scale_model_input`). With the
    denoised estimate `x_0` and `d = (x - x_0) / sigma`, a step to
    `sigma_next` is `x + (sigma_next - sigma) * d`; the last step goes to
    `sigma = 0`.

    With `ancestral=True` ("Euler a") each step goes down to
    `sigma_down = sqrt(sigma_next**2 - sigma_up**2)` and adds fresh noise
    of scale `sigma_up = sigma_next * sqrt(1 - sigma_next**2 / sigma**2)`.

    Timesteps: diffusers' default for Stable Diffusion's config is
    `"linspace"`, whose timesteps are fractional (999, 978.6, ...) with
    interpolated sigmas. The default here is `"trailing"`, the integer grid
    that also starts at t=999 (sigma_max, as A1111's Euler): 999, 979, ...,
    19 for 50 steps. `"linspace"` is available; its `timesteps` are floats,
    to be passed to the UNet and `step` unrounded.

    Args:
        num_train_timesteps: int. Number of diffusion steps in training.
        beta_start: float. Noise variance added at the first step.
        beta_end: float. Noise variance added at the last step.
        beta_schedule: `"scaled_linear"` or `"linear"`.
        prediction_type: `"epsilon"` or `"v_prediction"`.
        timestep_spacing: `"trailing"`, `"leading"` or `"linspace"`.
        steps_offset: int. Added to every `"leading"` timestep.
        ancestral: bool. Whether to sample ancestrally ("Euler a").

    Raises:
        ValueError: if an argument is out of its range.
    """

    def __init__(
        self,
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="trailing",
        steps_offset=1,
        ancestral=False,
    ):
        super().__init__(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=beta_schedule,
            prediction_type=prediction_type,
            timestep_spacing=timestep_spacing,
            steps_offset=steps_offset,
        )
        self.ancestral = bool(ancestral)
        self._sigmas = None
        self._largest_sigma = None

    @property
    def a1111_name(self):
        return "Euler a" if self.ancestral else "Euler"

    @property
    def init_noise_sigma(self):
        """Scale of the initial noise: the largest sigma of the schedule.

        As diffusers: `sigma_max` for "linspace" and "trailing", and
        `sqrt(sigma_max**2 + 1)` for "leading".
        """
        if self._sigmas is None:
            raise ValueError("Call `set_timesteps` before reading `init_noise_sigma`.")
        if self.timestep_spacing == "leading":
            return float((self._largest_sigma**2 + 1.0) ** 0.5)
        return float(self._largest_sigma)

    def get_config(self):
        return {**super().get_config(), "ancestral": self.ancestral}

    def set_timesteps(self, num_inference_steps, strength=1.0):
        """Chooses the timesteps (and sigmas) to sample at.

        Args:
            num_inference_steps: int. Number of steps of the full schedule.
            strength: float in (0, 1]. Image-to-image runs only the last
                `int(num_inference_steps * strength)` steps.

        Raises:
            ValueError: if an argument is out of its range.
        """
        skipped = self._steps_to_skip(num_inference_steps, strength)
        if self.timestep_spacing == "linspace":
            timesteps = np.linspace(0, self.num_train_timesteps - 1, num_inference_steps)
            timesteps = timesteps[::-1].copy()
        else:
            timesteps = self._spaced_timesteps(num_inference_steps)
        alphas = self.alphas_cumprod
        table = np.sqrt((1.0 - alphas) / alphas)
        sigmas = np.interp(timesteps, np.arange(self.num_train_timesteps), table)
        sigmas = np.append(sigmas, 0.0)
        self.num_inference_steps = int(num_inference_steps)
        self.timesteps = timesteps[skipped:]
        self._sigmas = sigmas[skipped:]
        self._largest_sigma = sigmas.max()

    def sigma(self, timestep):
        """The sigma of `timestep`, an element of `timesteps`."""
        return float(self._sigmas[self._index_of(timestep)])

    def scale_model_input(self, sample, timestep):
        """Returns `sample / sqrt(sigma**2 + 1)`, the UNet's input at `timestep`.

        Args:
            sample: the current sample.
            timestep: the current timestep, an element of `timesteps`.

        Returns:
            The UNet input, in `sample`'s dtype.
        """
        sigma = self.sigma(timestep)
        sample, dtype = self._as_tensors(sample)
        return ops.cast(sample / (sigma**2 + 1.0) ** 0.5, dtype)

    def step(self, model_output, timestep, sample, noise=None):
        """One Euler (or Euler ancestral) step to the next sigma.

        Args:
            model_output: the UNet output at `timestep` (epsilon or v) for
                `scale_model_input(sample, timestep)`.
            timestep: the current timestep, an element of `timesteps`.
            sample: the current (unscaled) sample.
            noise: standard normal noise of `sample`'s shape; required when
                `ancestral=True`.

        Returns:
            The sample at the next sigma, in `sample`'s dtype.

        Raises:
            ValueError: if `timestep` is not in `timesteps`, or `noise` is
                missing for an ancestral step.
        """
        index = self._index_of(timestep)
        if self.ancestral and noise is None:
            raise ValueError(
                "Euler a adds noise at each step: pass `noise` (standard normal, "
                "the shape of `sample`). Received: noise=None"
            )
        sample, model_output, noise, dtype = self._as_tensors(sample, model_output, noise)
        sigma = float(self._sigmas[index])
        sigma_next = float(self._sigmas[index + 1])
        # The UNet saw the variance-preserving sample alpha * x.
        alpha = 1.0 / (sigma**2 + 1.0) ** 0.5
        original, _ = self._split_prediction(
            model_output, alpha * sample, alpha, sigma * alpha
        )
        derivative = (sample - original) / sigma
        if not self.ancestral:
            return ops.cast(sample + (sigma_next - sigma) * derivative, dtype)
        sigma_up = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5
        # max(): sigma_next**2 - sigma_up**2 is sigma_next**4 / sigma**2, which
        # rounding could push below zero for tiny sigma_next.
        sigma_down = max(sigma_next**2 - sigma_up**2, 0.0) ** 0.5
        previous = sample + (sigma_down - sigma) * derivative + sigma_up * noise
        return ops.cast(previous, dtype)

    def step_table(self):
        """The coefficients of every step (see `Scheduler.step_table`).

        `x + (sigma_down - sigma) * (x - x_0) / sigma` is written as
        `(sigma_down / sigma) * x + (1 - sigma_down / sigma) * x_0`.
        """
        self._require_timesteps()
        sigma, sigma_next = self._sigmas[:-1], self._sigmas[1:]
        alpha = 1.0 / np.sqrt(sigma**2 + 1.0)
        if self.ancestral:
            sigma_up = np.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
            sigma_down = np.sqrt(np.maximum(sigma_next**2 - sigma_up**2, 0.0))
        else:
            sigma_up, sigma_down = np.zeros_like(sigma), sigma_next
        return make_step_table(
            len(self.timesteps),
            timestep=self.timesteps,
            input_scale=alpha,
            **self._prediction_columns(alpha, sigma * alpha, sample_scale=alpha),
            next_from_sample=sigma_down / sigma,
            next_from_estimate=1.0 - sigma_down / sigma,
            next_from_noise=sigma_up,
        )

    def add_noise(self, original_samples, noise, timesteps):
        """Returns `x_0 + sigma * noise`, the sample at `timesteps` in sigma space.

        As diffusers' `EulerDiscreteScheduler.add_noise`: the start of
        image-to-image, with sigma taken from the current schedule.

        Args:
            original_samples: clean samples, shape `(batch, ...)`.
            noise: standard normal noise, same shape.
            timesteps: an element of `timesteps`, or an array of them of
                shape `(batch,)`.

        Returns:
            The noisy samples, in `original_samples`' dtype.

        Raises:
            ValueError: if a timestep is not in `timesteps`.
        """
        original_samples, noise, dtype = self._as_tensors(original_samples, noise)
        steps = np.asarray(timesteps)
        sigmas = np.array([self.sigma(t) for t in steps.ravel()]).reshape(
            steps.shape + (1,) * (len(original_samples.shape) - steps.ndim)
        )
        sigmas = ops.convert_to_tensor(
            sigmas, keras.backend.standardize_dtype(original_samples.dtype)
        )
        return ops.cast(original_samples + sigmas * noise, dtype)
