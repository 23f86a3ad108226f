"""DDIM sampling (Song et al. 2021, "Denoising Diffusion Implicit Models")."""

import numpy as np
from keras import ops

from studio.schedulers.scheduler import Scheduler
from studio.schedulers.step_table import NO_CLIP, make_step_table

# DDPM-era pixel models clip their x_0 prediction to the image range.
CLIP_SAMPLE_RANGE = 1.0


class DDIMScheduler(Scheduler):
    """DDIM: deterministic (`eta=0`) or partly stochastic sampling.

    One step from `t` to the next timestep `s` (eq. 12 of Song et al.):
    `x_s = sqrt(a_s) * x_0 + sqrt(1 - a_s - sigma_t**2) * epsilon + sigma_t * z`
    with `sigma_t = eta * sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))`, where
    `a` is `alphas_cumprod` and `x_0`, `epsilon` come from the UNet output.

    The defaults are Stable Diffusion's scheduler config: "leading" spacing
    with `steps_offset=1` (50 steps: 981, 961, ..., 1) and the step after
    the last one lands on `alphas_cumprod[0]` (`set_alpha_to_one=False`).

    Args:
        num_train_timesteps: int. Number of diffusion steps in training.
        beta_start: float. Noise variance added at the first step.
        beta_end: float. Noise variance added at the last step.
        beta_schedule: `"scaled_linear"` or `"linear"`.
        prediction_type: `"epsilon"` or `"v_prediction"`.
        timestep_spacing: `"leading"`, `"trailing"` or `"linspace"`.
        steps_offset: int. Added to every `"leading"` timestep.
        eta: float >= 0. Weight of the fresh noise: 0 is DDIM, 1 is DDPM's
            posterior variance.
        set_alpha_to_one: bool. Whether the last step lands on a clean
            sample (`a = 1`) rather than on `alphas_cumprod[0]`.
        clip_sample: bool. Whether to clip the `x_0` prediction to [-1, 1]
            (for pixel-space models; off for Stable Diffusion's latents).

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
        timestep_spacing="leading",
        steps_offset=1,
        eta=0.0,
        set_alpha_to_one=False,
        clip_sample=False,
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
        if not eta >= 0.0:
            raise ValueError(f"`eta` must be >= 0. Received: eta={eta}")
        self.eta = float(eta)
        self.set_alpha_to_one = bool(set_alpha_to_one)
        self.clip_sample = bool(clip_sample)
        self._step_alphas = None

    @property
    def a1111_name(self):
        return "DDIM"

    def get_config(self):
        return {
            **super().get_config(),
            "eta": self.eta,
            "set_alpha_to_one": self.set_alpha_to_one,
            "clip_sample": self.clip_sample,
        }

    def set_timesteps(self, num_inference_steps, strength=1.0):
        """Chooses the timesteps to sample at.

        Args:
            num_inference_steps: int. Number of steps of the full schedule.
            strength: float in (0, 1]. Image-to-image runs only the last
                `int(num_inference_steps * strength)` steps.

        Raises:
            ValueError: if an argument is out of its range.
        """
        skipped = self._steps_to_skip(num_inference_steps, strength)
        timesteps = self._spaced_timesteps(num_inference_steps)
        final_alpha = 1.0 if self.set_alpha_to_one else self.alphas_cumprod[0]
        # alphas_cumprod at each step and at the step after it.
        alphas = np.append(self.alphas_cumprod[timesteps], final_alpha)
        self.num_inference_steps = int(num_inference_steps)
        self.timesteps = timesteps[skipped:]
        self._step_alphas = alphas[skipped:]

    def step(self, model_output, timestep, sample, noise=None):
        """One DDIM step from `timestep` to the next timestep of the schedule.

        Args:
            model_output: the UNet output at `timestep` (epsilon or v).
            timestep: the current timestep, an element of `timesteps` (a
                Python or NumPy number).
            sample: the current sample `x_t`.
            noise: standard normal noise of `sample`'s shape; required when
                `eta > 0`.

        Returns:
            The sample at the next timestep, in `sample`'s dtype.

        Raises:
            ValueError: if `timestep` is not in `timesteps`, or `noise` is
                missing when `eta > 0`.
        """
        index = self._index_of(timestep)
        if self.eta > 0 and noise is None:
            raise ValueError(
                f"DDIM with eta={self.eta} adds noise: pass `noise` (standard "
                "normal, the shape of `sample`). Received: noise=None"
            )
        sample, model_output, noise, dtype = self._as_tensors(sample, model_output, noise)
        alpha = float(self._step_alphas[index])
        alpha_next = float(self._step_alphas[index + 1])
        original, epsilon = self._split_prediction(
            model_output, sample, alpha**0.5, (1.0 - alpha) ** 0.5
        )
        if self.clip_sample:
            original = ops.clip(original, -CLIP_SAMPLE_RANGE, CLIP_SAMPLE_RANGE)
        variance = (1.0 - alpha_next) / (1.0 - alpha) * (1.0 - alpha / alpha_next)
        std = self.eta * variance**0.5
        # max(): rounding can leave -1e-17 where eta=1 makes the term vanish.
        direction = max(1.0 - alpha_next - std**2, 0.0) ** 0.5
        previous = alpha_next**0.5 * original + direction * epsilon
        if self.eta > 0:
            previous = previous + std * noise
        return ops.cast(previous, dtype)

    def step_table(self):
        """The coefficients of every step (see `Scheduler.step_table`)."""
        self._require_timesteps()
        alpha, alpha_next = self._step_alphas[:-1], self._step_alphas[1:]
        variance = (1.0 - alpha_next) / (1.0 - alpha) * (1.0 - alpha / alpha_next)
        std = self.eta * np.sqrt(variance)
        return make_step_table(
            len(self.timesteps),
            timestep=self.timesteps,
            input_scale=1.0,
            clip_range=CLIP_SAMPLE_RANGE if self.clip_sample else NO_CLIP,
            **self._prediction_columns(np.sqrt(alpha), np.sqrt(1.0 - alpha)),
            next_from_estimate=np.sqrt(alpha_next),
            next_from_epsilon=np.sqrt(np.maximum(1.0 - alpha_next - std**2, 0.0)),
            next_from_noise=std,
        )

    def add_noise(self, original_samples, noise, timesteps):
        """Draws `x_t ~ q(x_t | x_0)` (see `NoiseSchedule.add_noise`).

        Args:
            original_samples: clean samples, shape `(batch, ...)`.
            noise: standard normal noise, same shape.
            timesteps: int, or int array of shape `(batch,)`.

        Returns:
            The noisy samples.
        """
        return self.noise_schedule.add_noise(original_samples, noise, timesteps)
