"""DPM-Solver++(2M) sampling (Lu et al. 2022), A1111's "DPM++ 2M"."""

import math

import keras
import numpy as np
from keras import ops

from studio.schedulers.scheduler import Scheduler
from studio.schedulers.step_table import make_step_table

# Karras et al. (2022) space sigma**(1 / rho) evenly; rho = 7 is their value.
KARRAS_RHO = 7.0
# Below this many steps, `lower_order_final` makes the last step first order
# (diffusers' threshold: second-order steps are unstable when steps are few).
LOWER_ORDER_FINAL_MAX_STEPS = 15
FINAL_SIGMAS_TYPES = ("zero", "sigma_min")


class DPMSolverMultistepScheduler(Scheduler):
    """Second-order multistep DPM-Solver++ in its data-prediction form.

    With `alpha_t = sqrt(a_t)`, `sigma_t = sqrt(1 - a_t)`,
    `lambda_t = log(alpha_t / sigma_t)`, `h = lambda_t - lambda_s` and the
    UNet's `x_0` estimate `D0` at the current timestep `s`:

    - first order (the first step, and the last one, which by default
      lands on `sigma = 0` where `lambda` is infinite):
      `x_t = (sigma_t / sigma_s) * x_s - alpha_t * (exp(-h) - 1) * D0`;
    - second order, with the previous estimate `D_prev`, `h_prev` the
      previous step's `h` and `r = h_prev / h`:
      `x_t = (sigma_t / sigma_s) * x_s - alpha_t * (exp(-h) - 1) *
      (D0 + (D0 - D_prev) / (2 r))`.

    These are diffusers' `DPMSolverMultistepScheduler` with
    `algorithm_type="dpmsolver++"`, `solver_order=2` and
    `solver_type="midpoint"`. The solver keeps the previous `x_0`
    estimate, so `step` must be called on `timesteps` in order;
    `set_timesteps` clears that history.

    Timesteps: "linspace" (diffusers' default, integer after rounding;
    20 steps: 999, 949, ..., 50). With `use_karras_sigmas` the sigmas are
    Karras et al.'s and the timesteps the nearest integers to them.

    Args:
        num_train_timesteps: int. Number of diffusion steps in training.
        beta_start: float. Noise variance added at the first step.
        beta_end: float. Noise variance added at the last step.
        beta_schedule: `"scaled_linear"` or `"linear"`.
        prediction_type: `"epsilon"` or `"v_prediction"`.
        timestep_spacing: `"linspace"`, `"leading"` or `"trailing"` (the
            first two as diffusers' DPM-Solver, over `num_inference_steps + 1`
            points whose last is dropped).
        steps_offset: int. Added to every `"leading"` timestep.
        use_karras_sigmas: bool. Whether to use Karras sigmas ("DPM++ 2M
            Karras").
        final_sigmas_type: where the last step lands: `"zero"` (a clean
            sample; diffusers' default) or `"sigma_min"` (the noise level of
            training timestep 0, as diffusers before v0.26 and A1111).
        lower_order_final: bool. With `"sigma_min"`, whether the last step
            is first order when there are fewer than 15 steps (with `"zero"`
            it always is).

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
        timestep_spacing="linspace",
        steps_offset=1,
        use_karras_sigmas=False,
        final_sigmas_type="zero",
        lower_order_final=True,
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
        if final_sigmas_type not in FINAL_SIGMAS_TYPES:
            raise ValueError(
                f"`final_sigmas_type` must be one of {FINAL_SIGMAS_TYPES}. "
                f"Received: final_sigmas_type={final_sigmas_type!r}"
            )
        self.use_karras_sigmas = bool(use_karras_sigmas)
        self.final_sigmas_type = final_sigmas_type
        self.lower_order_final = bool(lower_order_final)
        self._sigmas = None
        self._next_index = None
        self._previous_original = None

    @property
    def a1111_name(self):
        return "DPM++ 2M Karras" if self.use_karras_sigmas else "DPM++ 2M"

    def get_config(self):
        return {
            **super().get_config(),
            "use_karras_sigmas": self.use_karras_sigmas,
            "final_sigmas_type": self.final_sigmas_type,
            "lower_order_final": self.lower_order_final,
        }

    def set_timesteps(self, num_inference_steps, strength=1.0):
        """Chooses the timesteps (and sigmas) and clears the solver's history.

        Args:
            num_inference_steps: int. Number of steps of the full schedule.
            strength: float in (0, 1]. Image-to-image runs only the last
                `int(num_inference_steps * strength)` steps.

        Raises:
            ValueError: if an argument is out of its range.
        """
        skipped = self._steps_to_skip(num_inference_steps, strength)
        total = self.num_train_timesteps
        if self.timestep_spacing == "linspace":
            points = np.round(np.linspace(0, total - 1, num_inference_steps + 1))
            timesteps = points[::-1][:-1].astype(np.int64)
        elif self.timestep_spacing == "leading":
            ratio = total // (num_inference_steps + 1)
            timesteps = np.arange(1, num_inference_steps + 1)[::-1] * ratio
            timesteps = (timesteps + self.steps_offset).astype(np.int64)
            self._check_in_range(timesteps)
        else:
            timesteps = self._spaced_timesteps(num_inference_steps)
        # The sigma of the variance-exploding form x / alpha = x_0 + sigma * eps.
        table = np.sqrt((1.0 - self.alphas_cumprod) / self.alphas_cumprod)
        if self.use_karras_sigmas:
            sigmas = self._karras_sigmas(table[0], table[-1], num_inference_steps)
            # The UNet is told the (rounded) timestep whose sigma is nearest.
            timesteps = np.interp(np.log(sigmas), np.log(table), np.arange(total))
            timesteps = np.round(timesteps).astype(np.int64)
        else:
            sigmas = table[timesteps]
        self.num_inference_steps = int(num_inference_steps)
        self.timesteps = timesteps[skipped:]
        final_sigma = 0.0 if self.final_sigmas_type == "zero" else table[0]
        self._sigmas = np.append(sigmas, final_sigma)[skipped:]
        self._next_index = None
        self._previous_original = None

    @staticmethod
    def _karras_sigmas(sigma_min, sigma_max, count):
        ramp = np.linspace(0.0, 1.0, count)
        start, stop = sigma_max ** (1 / KARRAS_RHO), sigma_min ** (1 / KARRAS_RHO)
        return (start + ramp * (stop - start)) ** KARRAS_RHO

    def sigma(self, timestep):
        """The variance-exploding sigma `sqrt((1 - a) / a)` used at `timestep`."""
        return float(self._sigmas[self._index_of(timestep)])

    def step(self, model_output, timestep, sample, noise=None):
        """One DPM-Solver++(2M) step to the next timestep of the schedule.

        Args:
            model_output: the UNet output at `timestep` (epsilon or v).
            timestep: the current timestep: the element of `timesteps` after
                the one of the previous call (any element on the first call).
            sample: the current sample `x_t`.
            noise: unused (the solver is deterministic); accepted so that all
                samplers are called alike.

        Returns:
            The sample at the next timestep, in `sample`'s dtype.

        Raises:
            ValueError: if `timestep` is not the expected one.
        """
        index = self._current_index(timestep)
        sample, model_output, dtype = self._as_tensors(sample, model_output)
        sigma, sigma_next = float(self._sigmas[index]), float(self._sigmas[index + 1])
        alpha_s, sigma_s = _variance_preserving(sigma)
        alpha_t, sigma_t = _variance_preserving(sigma_next)
        original, _ = self._split_prediction(model_output, sample, alpha_s, sigma_s)
        # exp(-h) = exp(lambda_s - lambda_t) is the ratio of the sigmas, which
        # stays finite when sigma_next = 0 makes lambda_t infinite.
        exp_minus_h = sigma_next / sigma
        data_weight = -alpha_t * (exp_minus_h - 1.0)
        # A zero-length step (Karras sigmas ending on sigma_min) moves nothing.
        if self._previous_original is None or self._is_first_order(index) or (
            sigma_next == sigma
        ):
            estimate = original
        else:
            sigma_previous = float(self._sigmas[index - 1])
            h = math.log(sigma / sigma_next)
            h_previous = math.log(sigma_previous / sigma)
            ratio = h_previous / h
            # The caller may change the sample's dtype between steps.
            previous_original = ops.cast(
                self._previous_original, keras.backend.standardize_dtype(original.dtype)
            )
            estimate = original + (0.5 / ratio) * (original - previous_original)
        previous = (sigma_t / sigma_s) * sample + data_weight * estimate
        self._previous_original = original
        self._next_index = index + 1
        return ops.cast(previous, dtype)

    def step_table(self):
        """The coefficients of every step (see `Scheduler.step_table`).

        `history_weight` is `1 / (2 r)` on second-order steps and 0 on the
        first, on first-order last steps and on zero-length steps.
        """
        self._require_timesteps()
        sigma, sigma_next = self._sigmas[:-1], self._sigmas[1:]
        alpha_s, sigma_s = _variance_preserving(sigma)
        alpha_t, sigma_t = _variance_preserving(sigma_next)
        history_weight = np.zeros_like(sigma)
        for index in range(1, len(sigma)):
            if self._is_first_order(index) or sigma_next[index] == sigma[index]:
                continue
            h = math.log(sigma[index] / sigma_next[index])
            h_previous = math.log(self._sigmas[index - 1] / sigma[index])
            history_weight[index] = 0.5 / (h_previous / h)
        return make_step_table(
            len(self.timesteps),
            timestep=self.timesteps,
            input_scale=1.0,
            **self._prediction_columns(alpha_s, sigma_s),
            history_weight=history_weight,
            next_from_sample=sigma_t / sigma_s,
            next_from_estimate=-alpha_t * (sigma_next / sigma - 1.0),
        )

    def _is_first_order(self, index):
        if index != len(self.timesteps) - 1:
            return False
        if self.final_sigmas_type == "zero":
            return True
        return (
            self.lower_order_final
            and self.num_inference_steps < LOWER_ORDER_FINAL_MAX_STEPS
        )

    def _current_index(self, timestep):
        if self._next_index is None:
            return self._index_of(timestep)
        index = self._next_index
        if index >= len(self.timesteps) or self.timesteps[index] != np.asarray(timestep):
            expected = (
                self.timesteps[index] if index < len(self.timesteps) else "none (done)"
            )
            raise ValueError(
                "DPM-Solver++ 2M is a multistep method: call `step` on `timesteps` "
                f"in order (call `set_timesteps` to start over). Expected timestep "
                f"{expected}. Received: timestep={timestep}"
            )
        return index

    def add_noise(self, original_samples, noise, timesteps):
        """Draws `x_t = alpha * x_0 + sigma_vp * noise` at the schedule's sigma.

        As diffusers: the noise level is that of the step at `timesteps` in
        the current schedule (with Karras sigmas it is not exactly the
        training table's).

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
        alphas = 1.0 / np.sqrt(sigmas**2 + 1.0)
        compute_dtype = keras.backend.standardize_dtype(original_samples.dtype)
        signal = ops.convert_to_tensor(alphas, compute_dtype)
        noise_level = ops.convert_to_tensor(alphas * sigmas, compute_dtype)
        return ops.cast(signal * original_samples + noise_level * noise, dtype)


def _variance_preserving(sigma):
    """`(alpha, sigma_vp)` with `alpha**2 + sigma_vp**2 = 1` for a VE `sigma`."""
    alpha = 1.0 / (sigma**2 + 1.0) ** 0.5
    return alpha, sigma * alpha
