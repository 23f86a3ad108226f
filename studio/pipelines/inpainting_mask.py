"""The mask of an inpainting: where an image is generated anew, where it is kept."""

import numpy as np

from studio.errors import InvalidInputError

# A mask pixel at or above half of full scale is "generate anew" (diffusers
# binarises at 0.5 too).
MASK_THRESHOLD = 0.5
# A Gaussian kernel reaches this many standard deviations each side.
BLUR_RADIUS_SIGMAS = 3


class InpaintingMask:
    """A mask image made ready for inpainting: grown, blurred, at latent size.

    White (1, or 255) marks what is generated anew, black (0) what is kept,
    as A1111 and diffusers. The mask is binarised at half scale, grown by
    `padding` pixels (so that the new content has room at its edges) and
    blurred by a Gaussian of `blur` pixels (so that it blends in).

    Args:
        mask: a uint8 (0-255), bool or float (0-1) array of shape
            (height, width), (height, width, 1) or (height, width, 3) (any
            channel above half scale counts).
        height: the init image's height; the mask must have it.
        width: the init image's width.
        blur: float >= 0. Standard deviation of the Gaussian blur, pixels.
        padding: int >= 0. Pixels by which the region to repaint grows.

    Raises:
        InvalidInputError: for a mask of another size, an empty mask, or a
            negative blur or padding.
    """

    def __init__(self, mask, height, width, blur=0.0, padding=0):
        mask = np.asarray(mask)
        if mask.ndim == 3:
            mask = mask.max(axis=-1)
        if mask.shape != (height, width):
            raise InvalidInputError(
                "The mask must have the init image's size "
                f"({height}x{width} pixels, height x width). Received: a mask of shape "
                f"{tuple(np.asarray(mask).shape)}"
            )
        if not blur >= 0 or int(padding) != padding or padding < 0:
            raise InvalidInputError(
                "Mask blur must be >= 0 and mask padding a whole number >= 0. "
                f"Received: blur={blur}, padding={padding}"
            )
        full_scale = 255.0 if mask.dtype == np.uint8 else 1.0
        binary = mask.astype(np.float64) / full_scale >= MASK_THRESHOLD
        if not binary.any():
            raise InvalidInputError(
                "The mask marks nothing to generate: paint the region to repaint white. "
                "Received: an all-black mask"
            )
        self.blur = float(blur)
        self.padding = int(padding)
        binary = _grow(binary, self.padding)
        self.binary = binary
        self.soft = _gaussian_blur(binary.astype(np.float64), self.blur)

    def latent_keep_mask(self, factor):
        """Where the latents keep the init image: 1 - the soft mask's mean per latent cell.

        Returns:
            float32 array (height / factor, width / factor, 1).
        """
        height, width = self.soft.shape
        cells = self.soft.reshape(height // factor, factor, width // factor, factor)
        return (1.0 - cells.mean(axis=(1, 3)))[..., None].astype(np.float32)

    def latent_binary_mask(self, factor):
        """The binarised mask at latent size, as an inpainting UNet reads it.

        Nearest neighbour (the top-left pixel of each cell), as diffusers'
        `interpolate(mask, size=latent_size)`.

        Returns:
            float32 array (height / factor, width / factor, 1).
        """
        return (self.soft[::factor, ::factor] >= MASK_THRESHOLD)[..., None].astype(np.float32)

    def overlay(self, generated, image):
        """`generated` where the soft mask is 1, `image` where it is 0, blended between.

        Args:
            generated: uint8 images (count, height, width, 3).
            image: the uint8 init image (height, width, 3).

        Returns:
            uint8 images like `generated`.
        """
        weight = self.soft[None, ..., None]
        blended = weight * generated.astype(np.float64) + (1.0 - weight) * image[None]
        return np.clip(np.round(blended), 0, 255).astype(np.uint8)

    def masked(self, pixels):
        """`pixels` (model range, (..., height, width, 3)) with the region to repaint at 0."""
        return pixels * (self.soft < MASK_THRESHOLD)[..., None]


def _grow(binary, pixels):
    """Dilates a bool mask by `pixels` (a square neighbourhood)."""
    grown = binary.copy()
    for _ in range(pixels):
        step = grown.copy()
        step[1:] |= grown[:-1]
        step[:-1] |= grown[1:]
        step[:, 1:] |= step[:, :-1].copy()
        step[:, :-1] |= step[:, 1:].copy()
        grown = step
    return grown


def _gaussian_blur(values, sigma):
    """Separable Gaussian blur with edge padding (`sigma` 0: unchanged)."""
    if sigma == 0:
        return values
    radius = max(1, int(np.ceil(BLUR_RADIUS_SIGMAS * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in (0, 1):
        padded = np.pad(values, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)],
                        mode="edge")
        values = np.apply_along_axis(lambda line: np.convolve(line, kernel, mode="valid"),
                                     axis, padded)
    return values
