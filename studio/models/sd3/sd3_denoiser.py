"""keras-hub's MMDiT called with the studio's denoiser inputs."""

import keras
from keras import ops

from studio.errors import InvalidInputError


class SD3Denoiser(keras.layers.Layer):
    """The MMDiT behind the inputs every studio denoiser takes.

    Pipelines call a family's `denoiser` with `{"latents", "timesteps",
    **encode_text(...)}` (`GuidedDenoiser`); keras-hub's MMDiT names its
    inputs `latent`, `context`, `pooled_projection` and a `(batch, 1)`
    `timestep`. This layer renames and reshapes, and owns no weights of its
    own: the MMDiT's variables are its variables, so a compiled sampling
    loop passes them as state.

    keras-hub builds its MMDiT as a functional model at one latent size
    (the preset's image size); other sizes are refused here rather than
    unpatched wrongly.

    Args:
        mmdit: keras-hub's `MMDiT` (`StableDiffusion3Backbone.diffuser`).

    Call arguments:
        inputs: a dict with `"latents"` `(batch, h, w, 16)`, `"timesteps"`
            `(batch,)` (`sigma * num_train_timesteps`), `"context"` and
            `"pooled_projection"` (`SD3Backbone.encode_text`).

    Returns:
        The velocity `noise - x0`, shape of `"latents"`.
    """

    def __init__(self, mmdit, **kwargs):
        super().__init__(**kwargs)
        self.mmdit = mmdit
        # All weights belong to the (already built) MMDiT.
        self.built = True

    @property
    def latent_shape(self):
        return tuple(self.mmdit.latent_shape)

    def call(self, inputs, training=False):
        latents = inputs["latents"]
        size = tuple(latents.shape[1:3])
        expected = self.latent_shape[:2]
        if None not in size and size != expected:
            raise InvalidInputError(
                f"keras-hub's MMDiT is built for {expected[0]}x{expected[1]} latents (the "
                f"preset's image size). Received: latents of {size[0]}x{size[1]}; generate "
                "at the model's own height and width."
            )
        timesteps = ops.reshape(ops.cast(inputs["timesteps"], "float32"), (-1, 1))
        timesteps = ops.broadcast_to(timesteps, (ops.shape(latents)[0], 1))
        return self.mmdit(
            {
                "latent": latents,
                "context": inputs["context"],
                "pooled_projection": inputs["pooled_projection"],
                "timestep": timesteps,
            },
            training=training,
        )
