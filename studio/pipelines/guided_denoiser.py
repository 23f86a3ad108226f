"""One classifier-free-guided UNet evaluation, as a model Keras can compile."""

import keras
from keras import ops


class GuidedDenoiser(keras.Model):
    """Runs the UNet on the conditional and unconditional halves and mixes them.

    Wrapping this in a `keras.Model` lets `predict_on_batch` compile it (XLA
    on TensorFlow, `jax.jit` on JAX) once per input shape, with the UNet's
    weights passed as state rather than baked in as constants.

    Args:
        unet: the `UNet` to evaluate.

    Call arguments:
        inputs: a tuple `(latents, timesteps, conditioning,
            unconditional_conditioning, guidance_scale)` with shapes
            (batch, h, w, c), (batch,), ..., (batch,). The two conditionings
            are the backbone's `encode_text` dicts (SD: `{"context"}`; SDXL
            adds `"text_embeds"` and `"time_ids"`), or SD's bare context
            tensors, `(batch, length, width)`.

    Returns:
        The guided prediction `uncond + scale * (cond - uncond)`,
        shape (batch, h, w, c).
    """

    def __init__(self, unet, **kwargs):
        super().__init__(**kwargs)
        self.unet = unet
        # All weights belong to the (already built) UNet.
        self.built = True

    def call(self, inputs):
        latents, timesteps, conditioning, unconditional, guidance_scale = inputs
        if not isinstance(conditioning, dict):
            conditioning, unconditional = {"context": conditioning}, {"context": unconditional}
        prediction = self.unet(
            {
                "latents": ops.concatenate([latents, latents], axis=0),
                "timesteps": ops.concatenate([timesteps, timesteps], axis=0),
                **{
                    name: ops.concatenate([value, unconditional[name]], axis=0)
                    for name, value in conditioning.items()
                },
            }
        )
        conditional, unconditional = ops.split(prediction, 2, axis=0)
        scale = ops.cast(ops.reshape(guidance_scale, (-1, 1, 1, 1)), prediction.dtype)
        return unconditional + scale * (conditional - unconditional)
