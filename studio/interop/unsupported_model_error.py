"""Error raised for well-formed models of an architecture the studio lacks."""

from studio.interop.checkpoint_format_error import CheckpointFormatError


class UnsupportedModelError(CheckpointFormatError):
    """A readable model that is not Stable Diffusion 1.x or 2.x (text-to-image or inpainting).

    SD-XL, SD 3, instruct-pix2pix and other UNet variants are recognised and named
    in the message, so the user knows what they gave.
    """
