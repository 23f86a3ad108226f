"""A backbone's latent decoding as one compiled call."""

import keras

from studio.models.winograd_convolution import winograd_convolutions


class LatentDecoder(keras.Model):
    """`backbone.decode_latents` compiled once per latent shape.

    Run eagerly, the VAE decoder is hundreds of separate ops (under JAX each
    its own small program); compiled, the backend plans them together. On
    2 CPU cores, SD 1.x's decoder at 256 px took 3.4 s instead of 3.9 s
    (TensorFlow, as fast as diffusers') and 3.4 s instead of 3.8-4.1 s
    (JAX, whose first call also got faster: 6.4 s instead of 7.1 s).

    The decoder network (`backbone.vae_decoder`) is tracked, so its weights
    are the compiled call's state, not constants folded into it.

    Args:
        backbone: a `DiffusionBackbone` (or a view of one).
        winograd: bool. Decode inside `winograd_convolutions()` (faster on
            a CPU, equal to float rounding).

    Call arguments:
        latents: the denoiser's scaled latents `(batch, h, w, channels)`.

    Returns:
        Pixels in about [-1, 1], `(batch, H, W, 3)`.
    """

    def __init__(self, backbone, winograd=False, **kwargs):
        super().__init__(**kwargs)
        self.winograd = bool(winograd)
        self.decoder = backbone.vae_decoder
        self._decode = backbone.decode_latents
        self.built = True

    def call(self, latents):
        with winograd_convolutions(self.winograd):
            return self._decode(latents)
