"""Euler sampling of a rectified flow (Stable Diffusion 3), as diffusers' FlowMatchEulerDiscreteScheduler."""

import numpy as np
from keras import ops

from studio.schedulers.scheduler import Scheduler
from studio.schedulers.step_table import make_step_table

# `prediction_type` of denoisers that predict the flow's velocity `noise - x0`.
FLOW_PREDICTION = "flow"


class FlowMatchEulerScheduler(Scheduler):
    """Euler steps along the straight path `x = (1 - sigma) * x0 + sigma * noise`.

    The denoiser sees `sigma * num_train_timesteps` and predicts the
    velocity `v = noise - x0`; a step to `sigma_next` is
    `x + (sigma_next - sigma) * v`. In the step table's terms that is
    `x0 = x - sigma * v`, `epsilon = x + (1 - sigma) * v` and
    `x_next = (1 - sigma_next) * x0 + sigma_next * epsilon` (DDIM with
    eta 0 on this schedule is the same step). With `stochastic_sampling`
    the epsilon is replaced by fresh noise, as diffusers' option.

    Sigmas (`set_timesteps`) are diffusers' and keras-hub's: timesteps
    evenly from `sigma_max * N` down to `sigma_min * N`, where the training
    schedule's `sigma_min` is the shifted `1 / N`; each divided by `N` and
    shifted `shift * s / (1 + (shift - 1) * s)`; a final sigma of 0.

    Args:
        num_train_timesteps: int, N of the training schedule (SD3: 1000).
        shift: float > 0, the sigma shift (SD3: 3.0).
        stochastic_sampling: bool, draw a fresh epsilon at every step.

    Raises:
        ValueError: if an argument is out of its range.

    Example:

    ```python
    scheduler = FlowMatchEulerScheduler(shift=3.0)
    scheduler.set_timesteps(28)
    latents = noise
    for t in scheduler.timesteps:
        latents = scheduler.step(mmdit_velocity(latents, t), t, latents)
    ```
    """

    def __init__(self, num_train_timesteps=1000, shift=3.0, stochastic_sampling=False):
        # No DDPM noise schedule: the base class's beta arguments do not apply.
        if int(num_train_timesteps) != num_train_timesteps or num_train_timesteps < 1:
            raise ValueError(
                "`num_train_timesteps` must be an integer >= 1. "
                f"Received: num_train_timesteps={num_train_timesteps}"
            )
        if not shift > 0:
            raise ValueError(f"`shift` must be > 0 (SD3: 3.0). Received: shift={shift!r}")
        self.num_train_timesteps = int(num_train_timesteps)
        self.shift = float(shift)
        self.stochastic_sampling = bool(stochastic_sampling)
        self.prediction_type = FLOW_PREDICTION
        self.timesteps = None
        self.num_inference_steps = None
        self.sigmas = None

    @property
    def a1111_name(self):
        return "Euler"

    @property
    def init_noise_sigma(self):
        """Text-to-image starts at sigma 1: pure noise."""
        return 1.0

    def get_config(self):
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "shift": self.shift,
            "stochastic_sampling": self.stochastic_sampling,
        }

    def shifted(self, sigmas):
        """`shift * s / (1 + (shift - 1) * s)`, the schedule's bend toward noise."""
        sigmas = np.asarray(sigmas, np.float64)
        return self.shift * sigmas / (1.0 + (self.shift - 1.0) * sigmas)

    def set_timesteps(self, num_inference_steps, strength=1.0):
        """Chooses the sigmas (and timesteps `sigma * N`) to sample at.

        Args:
            num_inference_steps: int, steps of the full schedule.
            strength: float in (0, 1]: image-to-image runs only the last
                `int(num_inference_steps * strength)` steps.

        Raises:
            ValueError: if an argument is out of its range.
        """
        skipped = self._steps_to_skip(num_inference_steps, strength)
        n = self.num_train_timesteps
        sigma_max, sigma_min = 1.0, float(self.shifted(1.0 / n))
        timesteps = np.linspace(sigma_max * n, sigma_min * n, int(num_inference_steps))
        sigmas = np.append(self.shifted(timesteps / n), 0.0)
        self.num_inference_steps = int(num_inference_steps)
        self.sigmas = sigmas[skipped:]
        self.timesteps = self.sigmas[:-1] * n

    def sigma(self, timestep):
        """The sigma of `timestep`, an element of `timesteps`."""
        return float(self.sigmas[self._index_of(timestep)])

    def step(self, model_output, timestep, sample, noise=None):
        """One Euler step to the next sigma.

        Args:
            model_output: the denoiser's velocity at `timestep`.
            timestep: the current timestep, an element of `timesteps`.
            sample: the current sample.
            noise: standard normal noise of `sample`'s shape; required with
                `stochastic_sampling`.

        Returns:
            The sample at the next sigma, in `sample`'s dtype.

        Raises:
            ValueError: if `timestep` is not in `timesteps`, or `noise` is
                missing for a stochastic step.
        """
        index = self._index_of(timestep)
        if self.stochastic_sampling and noise is None:
            raise ValueError(
                "Stochastic flow sampling draws fresh noise at each step: pass `noise` "
                "(standard normal, the shape of `sample`). Received: noise=None"
            )
        sample, model_output, noise, dtype = self._as_tensors(sample, model_output, noise)
        sigma, sigma_next = float(self.sigmas[index]), float(self.sigmas[index + 1])
        if self.stochastic_sampling:
            original = sample - sigma * model_output
            return ops.cast((1.0 - sigma_next) * original + sigma_next * noise, dtype)
        return ops.cast(sample + (sigma_next - sigma) * model_output, dtype)

    def step_table(self):
        """The coefficients of every step (see `Scheduler.step_table`)."""
        self._require_timesteps()
        sigma, sigma_next = self.sigmas[:-1], self.sigmas[1:]
        epsilon_weight = 0.0 if self.stochastic_sampling else sigma_next
        return make_step_table(
            len(self.timesteps),
            timestep=self.timesteps,
            input_scale=1.0,
            original_from_sample=1.0,
            original_from_output=-sigma,
            epsilon_from_sample=1.0,
            epsilon_from_output=1.0 - sigma,
            next_from_estimate=1.0 - sigma_next,
            next_from_epsilon=epsilon_weight,
            next_from_noise=sigma_next if self.stochastic_sampling else 0.0,
        )

    def add_noise(self, original_samples, noise, timesteps):
        """`(1 - sigma) * x0 + sigma * noise` at `timesteps` (diffusers' `scale_noise`).

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
        sigmas = np.array([self.sigma(t) for t in steps.ravel()], np.float32).reshape(
            steps.shape + (1,) * (len(original_samples.shape) - steps.ndim)
        )
        sigmas = ops.convert_to_tensor(sigmas, original_samples.dtype)
        return ops.cast((1.0 - sigmas) * original_samples + sigmas * noise, dtype)
