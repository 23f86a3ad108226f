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
        inputs: a tuple `(latents, timesteps, context,
            unconditional_context, guidance_scale)` with shapes (batch, h, w, c),
            (batch,), (batch, length, width), (batch, length, width), (batch,).

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
        latents, timesteps, context, unconditional_context, guidance_scale = inputs
        prediction = self.unet(
            {
                "latents": ops.concatenate([latents, latents], axis=0),
                "timesteps": ops.concatenate([timesteps, timesteps], axis=0),
                "context": ops.concatenate([context, unconditional_context], axis=0),
            }
        )
        conditional, unconditional = ops.split(prediction, 2, axis=0)
        scale = ops.cast(ops.reshape(guidance_scale, (-1, 1, 1, 1)), prediction.dtype)
        return unconditional + scale * (conditional - unconditional)
