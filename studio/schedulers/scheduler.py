"""What every sampler shares: the noise schedule, timestep spacing, config."""

import keras
import numpy as np
from keras import ops

from studio.schedulers.noise_schedule import NoiseSchedule

TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


class Scheduler:
    """Base class of the samplers: holds a `NoiseSchedule` and the step grid.

    Subclasses implement `set_timesteps`, `step`, `add_noise` and
    `a1111_name`, following diffusers' scheduler contract:

    ```python
    scheduler.set_timesteps(num_inference_steps, strength=1.0)
    latents = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, t)
        latents = scheduler.step(unet(model_input, t), t, latents, noise=fresh_noise)
    ```

    `step` takes the timestep as a Python number (an element of
    `timesteps`) and computes its coefficients in NumPy, so its tensor math
    is plain `keras.ops` arithmetic that traces into compiled functions.

    Args:
        num_train_timesteps: int. Number of diffusion steps in training.
        beta_start: float. Noise variance added at the first step.
        beta_end: float. Noise variance added at the last step.
        beta_schedule: `"scaled_linear"` or `"linear"`.
        prediction_type: `"epsilon"` or `"v_prediction"`.
        timestep_spacing: how `set_timesteps` picks timesteps, as diffusers
            (Table 2 of Lin et al. 2023): `"leading"` (`0, k, 2k, ...` plus
            `steps_offset`), `"trailing"` (`T - 1, T - 1 - k, ...`) or
            `"linspace"` (evenly from `T - 1` down to 0).
        steps_offset: int. Added to every `"leading"` timestep (1 in Stable
            Diffusion's config, so the last step is at t=1, not t=0).

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
    ):
        self.noise_schedule = NoiseSchedule(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=beta_schedule,
            prediction_type=prediction_type,
        )
        if timestep_spacing not in TIMESTEP_SPACINGS:
            raise ValueError(
                f"`timestep_spacing` must be one of {TIMESTEP_SPACINGS}. "
                f"Received: timestep_spacing={timestep_spacing!r}"
            )
        if int(steps_offset) != steps_offset or steps_offset < 0:
            raise ValueError(
                "`steps_offset` must be a non-negative integer. "
                f"Received: steps_offset={steps_offset}"
            )
        self.num_train_timesteps = self.noise_schedule.num_train_timesteps
        self.beta_start = beta_start
        self.beta_end = beta_end
        self.beta_schedule = beta_schedule
        self.prediction_type = prediction_type
        self.timestep_spacing = timestep_spacing
        self.steps_offset = int(steps_offset)
        self.timesteps = None
        self.num_inference_steps = None

    @property
    def alphas_cumprod(self):
        """The training schedule's `alphas_cumprod` (NumPy float64)."""
        return self.noise_schedule.alphas_cumprod

    @property
    def init_noise_sigma(self):
        """Standard deviation of the initial noise for text-to-image."""
        return 1.0

    @property
    def a1111_name(self):
        """The sampler's name in AUTOMATIC1111's PNG metadata."""
        raise NotImplementedError

    def get_config(self):
        return {
            **self.noise_schedule.get_config(),
            "timestep_spacing": self.timestep_spacing,
            "steps_offset": self.steps_offset,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def set_timesteps(self, num_inference_steps, strength=1.0):
        """Chooses `timesteps` (descending) and resets any sampling state."""
        raise NotImplementedError

    def step(self, model_output, timestep, sample, noise=None):
        """Returns the sample at the timestep after `timestep`."""
        raise NotImplementedError

    def add_noise(self, original_samples, noise, timesteps):
        """Returns `original_samples` noised to `timesteps` (image-to-image start)."""
        raise NotImplementedError

    def step_table(self):
        """The coefficients of every step of the schedule, one row per step.

        What a compiled sampling loop runs (`studio.schedulers.step_table`):
        row `i` applied with `step_from_table` is `step` at `timesteps[i]`.

        Returns:
            A dict of `STEP_TABLE_COLUMNS` to float32 arrays of length
            `len(timesteps)`.

        Raises:
            ValueError: if `set_timesteps` was not called.
        """
        raise NotImplementedError

    def _require_timesteps(self):
        if self.timesteps is None:
            raise ValueError(
                f"Call `set_timesteps` on the {type(self).__name__} before sampling."
            )

    def _prediction_columns(self, alpha, sigma, sample_scale=1.0):
        """Step-table columns of `x_0` and `epsilon` from the UNet output.

        The vectorised `_split_prediction` for `sample_scale * x = alpha * x_0
        + sigma * epsilon` (NumPy arrays or floats).
        """
        if self.prediction_type == "v_prediction":
            return {
                "original_from_sample": alpha * sample_scale,
                "original_from_output": -sigma,
                "epsilon_from_sample": sigma * sample_scale,
                "epsilon_from_output": alpha,
            }
        return {
            "original_from_sample": sample_scale / alpha,
            "original_from_output": -sigma / alpha,
            "epsilon_from_sample": 0.0,
            "epsilon_from_output": 1.0,
        }

    def scale_model_input(self, sample, timestep):
        """Returns what the UNet should see at `timestep` (here: `sample`).

        Args:
            sample: the current sample.
            timestep: the current timestep, an element of `timesteps`.

        Returns:
            The UNet input.
        """
        return sample

    def _steps_to_skip(self, num_inference_steps, strength):
        """Validates `set_timesteps`' arguments; returns how many steps to drop.

        Image-to-image starts partway down the schedule and runs only the last
        `int(num_inference_steps * strength)` steps, as diffusers' img2img
        `get_timesteps`.
        """
        if (
            int(num_inference_steps) != num_inference_steps
            or not 1 <= num_inference_steps <= self.num_train_timesteps
        ):
            raise ValueError(
                "`num_inference_steps` must be an integer in "
                f"[1, num_train_timesteps={self.num_train_timesteps}]. "
                f"Received: num_inference_steps={num_inference_steps}"
            )
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"`strength` must be in (0, 1]. Received: strength={strength}")
        num_inference_steps = int(num_inference_steps)
        kept = int(num_inference_steps * strength)
        if kept < 1:
            raise ValueError(
                "`num_inference_steps * strength` must be at least 1 so that one "
                f"step runs. Received: num_inference_steps={num_inference_steps}, "
                f"strength={strength}"
            )
        return num_inference_steps - kept

    def _spaced_timesteps(self, num_inference_steps):
        """Integer timesteps, descending, as diffusers' DDIM and Euler."""
        total = self.num_train_timesteps
        if self.timestep_spacing == "leading":
            ratio = total // num_inference_steps
            timesteps = np.arange(num_inference_steps)[::-1] * ratio + self.steps_offset
        elif self.timestep_spacing == "trailing":
            ratio = total / num_inference_steps
            timesteps = np.round(total - np.arange(num_inference_steps) * ratio) - 1
        else:
            timesteps = np.round(np.linspace(0, total - 1, num_inference_steps))[::-1]
        timesteps = timesteps.astype(np.int64)
        self._check_in_range(timesteps)
        return timesteps

    def _check_in_range(self, timesteps):
        if timesteps.max() >= self.num_train_timesteps:
            raise ValueError(
                f"`steps_offset={self.steps_offset}` puts the first timestep at "
                f"{timesteps.max()}, past the last training timestep "
                f"{self.num_train_timesteps - 1}; use fewer steps or steps_offset=0. "
                f"Received: num_inference_steps={len(timesteps)}"
            )

    def _index_of(self, timestep):
        """Position of `timestep` in `timesteps` (its first occurrence)."""
        self._require_timesteps()
        matches = np.flatnonzero(self.timesteps == np.asarray(timestep))
        if not matches.size:
            raise ValueError(
                "`timestep` must be one of the scheduler's timesteps "
                f"{self.timesteps.tolist()}. Received: timestep={timestep}"
            )
        return int(matches[0])

    @staticmethod
    def _as_tensors(sample, *others):
        """`sample` and `others` as tensors in one float dtype (at least float32).

        Returns the tensors followed by `sample`'s own dtype, to cast back to.
        """
        sample = ops.convert_to_tensor(sample)
        dtype = keras.backend.standardize_dtype(sample.dtype)
        # The step coefficients span orders of magnitude; float16 would lose them.
        compute_dtype = keras.backend.result_type(dtype, "float32")
        tensors = [ops.cast(sample, compute_dtype)]
        tensors += [None if x is None else ops.cast(x, compute_dtype) for x in others]
        return (*tensors, dtype)

    def _split_prediction(self, model_output, sample, alpha, sigma):
        """`(x_0, epsilon)` from the UNet output, for `x = alpha * x_0 + sigma * epsilon`.

        `alpha` and `sigma` are Python floats (variance preserving:
        `alpha**2 + sigma**2 = 1`).
        """
        if self.prediction_type == "v_prediction":
            # v = alpha * epsilon - sigma * x_0.
            original = alpha * sample - sigma * model_output
            epsilon = alpha * model_output + sigma * sample
        else:
            original = (sample - sigma * model_output) / alpha
            epsilon = model_output
        return original, epsilon
