"""The whole guided denoising loop as one compiled model call."""

import threading

import keras
from keras import ops

from studio.models.winograd_convolution import winograd_convolutions
from studio.pipelines.guided_denoiser import GuidedDenoiser
from studio.pipelines.step_report import report_step
from studio.schedulers.step_table import step_from_table


class SamplingLoop(keras.Model):
    """Runs every sampling step (guided UNet, then sampler step) in one call.

    The loop is `ops.fori_loop` over the rows of the sampler's step table
    (`Scheduler.step_table`), so `predict_on_batch` compiles the whole
    generation once per input shape (steps, size, batch) and runs it
    without a return to the host between steps. The schedule is input data,
    not a traced constant: another sampler or number of steps can never
    reuse a stale schedule (keras-hub's `generate()` on JAX keeps the sigmas
    of its first call).

    Inpainting adds two optional inputs:

    - `"conditioning"`: channels concatenated to the UNet input after the
      sampler's input scaling (a 9-channel inpainting UNet's mask and
      masked-image latents, as diffusers' `StableDiffusionInpaintPipeline`).
    - `"keep_mask"` and `"kept"`: for ordinary UNets, after step `i` the
      region where `keep_mask` is 1 is replaced by `kept[i]`, the original
      image's latents noised to the next step's level (A1111's and
      diffusers' legacy inpainting; `kept[-1]` is the clean latents).

    Each finished step is reported to `step_listener` (a callable taking
    the step index, or None) from inside the compiled call, where the
    backend can call Python (`report_step`); the listener runs on a thread
    of the backend's runtime. `TextToImagePipeline` turns that into its
    per-step `callback` on the caller's thread.

    Args:
        unet: the `UNet` to evaluate.
        winograd: bool. Trace the UNet inside `winograd_convolutions()`:
            its larger 3x3 convolutions use Winograd's algorithm (faster on
            a CPU, equal to float rounding).

    Call arguments:
        inputs: a dict with `"latents"` (batch, h, w, c), the initial sample;
            `"context"` and `"unconditional_context"`, the backbone's
            `encode_text` dicts (SD: `{"context"}`; SDXL adds `"text_embeds"`
            and `"time_ids"`) or SD's bare context tensors;
            `"guidance_scale"` (batch,); `"noise"` (steps, batch, h, w, c),
            each step's fresh noise; `"table"`, the step table (a dict of
            columns of length steps); and optionally the inpainting inputs
            above (`"conditioning"` (batch, h, w, k), `"keep_mask"`
            (batch, h, w, 1), `"kept"` like `"noise"`).

    Returns:
        The final latents, float32, shape (batch, h, w, c).
    """

    def __init__(self, unet, winograd=False, **kwargs):
        super().__init__(**kwargs)
        self.denoiser = GuidedDenoiser(unet)
        self.winograd = bool(winograd)
        # All weights belong to the (already built) UNet.
        self.built = True
        # Set by the caller around one call; the compiled program calls
        # `_step_done`, a stable method, so a new listener never retraces.
        self.step_listener = None
        # `predict_with_step_reports` holds it for a call: one listener.
        self.call_lock = threading.Lock()

    def _step_done(self, index):
        listener = self.step_listener
        if listener is not None:
            listener(index)

    def call(self, inputs):
        with winograd_convolutions(self.winograd):
            return self._loop(inputs)

    def _loop(self, inputs):
        latents = ops.cast(inputs["latents"], "float32")
        table = {name: ops.cast(column, "float32") for name, column in inputs["table"].items()}
        noise = ops.cast(inputs["noise"], "float32")
        scales = ops.cast(inputs["guidance_scale"], "float32")
        context = inputs["context"]
        unconditional = inputs["unconditional_context"]
        conditioning = inputs.get("conditioning")
        keep_mask = inputs.get("keep_mask")
        if keep_mask is not None:
            keep_mask = ops.cast(keep_mask, "float32")
            kept = ops.cast(inputs["kept"], "float32")

        def body(index, carry):
            sample, previous_original = carry
            row = {name: ops.take(column, index) for name, column in table.items()}
            model_input = sample * row["input_scale"]
            if conditioning is not None:
                model_input = ops.concatenate(
                    [model_input, ops.cast(conditioning, model_input.dtype)], axis=-1
                )
            # The UNet takes one timestep per image.
            timesteps = ops.ones_like(scales) * row["timestep"]
            prediction = self.denoiser(
                (model_input, timesteps, context, unconditional, scales)
            )
            sample, original_estimate = step_from_table(
                row,
                ops.cast(prediction, "float32"),
                sample,
                ops.take(noise, index, axis=0),
                previous_original,
            )
            if keep_mask is not None:
                sample = keep_mask * ops.take(kept, index, axis=0) + (1.0 - keep_mask) * sample
            report_step(self._step_done, index, sample, compiled_with_xla=bool(self.jit_compile))
            return sample, original_estimate

        steps = ops.shape(noise)[0]
        sample, _ = ops.fori_loop(0, steps, body, (latents, ops.zeros_like(latents)))
        return sample
