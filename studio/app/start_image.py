"""The Generate page's start image: image-to-image, and inpainting with a mask."""

import dataclasses
import io

import streamlit as st

from studio.app.safe_uploads import MAX_IMAGE_BYTES, MEBIBYTE

IMAGE_TYPES = ["png", "jpg", "jpeg", "webp"]
# Where the mask comes from.
NO_MASK = "No mask (img2img)"
UPLOADED_MASK = "Upload a mask"
RECTANGLE_MASK = "Mark a rectangle"
MASK_SOURCES = (NO_MASK, UPLOADED_MASK, RECTANGLE_MASK)
MAX_MASK_BLUR = 64.0
MAX_MASK_PADDING = 256
# The preview tints the region to repaint with this colour, half opaque.
PREVIEW_TINT = (255, 0, 128)
PREVIEW_WIDTH = 256


@dataclasses.dataclass
class StartImage:
    """What the Generate page starts from, as `TextToImagePipeline` takes it.

    Attributes:
        pixels: the uint8 start image (height, width, 3), or None (text to image).
        strength: the share of the start image replaced by noise ("denoise strength").
        mask: None, or a uint8 mask (height, width) of the start image's size:
            255 is generated anew, 0 kept (inpainting).
        mask_blur: Gaussian blur of the mask, in pixels.
        mask_padding: pixels by which the region to repaint grows.
    """

    pixels: object = None
    strength: float = 0.75
    mask: object = None
    mask_blur: float = 0.0
    mask_padding: int = 0

    def pipeline_options(self):
        """The keyword arguments of the pipeline call (none for text to image)."""
        if self.pixels is None:
            return {}
        options = {"init_image": self.pixels, "strength": self.strength}
        if self.mask is not None:
            options.update(mask=self.mask, mask_blur=self.mask_blur,
                           mask_padding=self.mask_padding)
        return options


def pick_start_image(width, height):
    """The start-image expander; returns a `StartImage` at `width` x `height`.

    Raises:
        ValueError: a mask without a start image, or a file that is not an image.
    """
    with st.expander("Start from an image (img2img, inpainting)"):
        upload = st.file_uploader("Start image", type=IMAGE_TYPES, key="generate_init_image",
                                  max_upload_size=MAX_IMAGE_BYTES // MEBIBYTE)
        strength = st.slider("Denoise strength", 0.05, 1.0, step=0.05, key="generate_strength",
                             help="How much of the start image is replaced by noise: low keeps "
                             "it, 1 ignores it. Runs about Steps × Strength steps.")
        source = st.radio("Inpainting mask", MASK_SOURCES, horizontal=True,
                          key="generate_mask_source",
                          help="Inpainting generates anew only where the mask is white and "
                          "keeps the rest of the start image.")
        mask_upload, box = None, None
        if source == UPLOADED_MASK:
            mask_upload = st.file_uploader(
                "Mask image: white is generated anew, black kept (resized to the image)",
                type=IMAGE_TYPES, key="generate_mask",
                max_upload_size=MAX_IMAGE_BYTES // MEBIBYTE)
        elif source == RECTANGLE_MASK:
            row = st.columns(2)
            box = (row[0].slider("Left to right (%)", 0, 100, key="generate_mask_columns"),
                   row[1].slider("Top to bottom (%)", 0, 100, key="generate_mask_rows"))
        if source != NO_MASK:
            row = st.columns(2)
            blur = row[0].number_input("Mask blur (pixels)", 0.0, MAX_MASK_BLUR, step=1.0,
                                       key="generate_mask_blur",
                                       help="Softens the mask's edge so the new part blends in.")
            padding = row[1].number_input("Mask padding (pixels)", 0, MAX_MASK_PADDING,
                                          key="generate_mask_padding",
                                          help="Grows the region to repaint, giving the new "
                                          "content room at its edges.")
        pixels = _read_image(upload, width, height, "RGB") if upload is not None else None
        mask = None
        if mask_upload is not None:
            mask = _read_image(mask_upload, width, height, "L", nearest=True)
        elif box is not None:
            mask = rectangle_mask(width, height, *box)
        elif source == UPLOADED_MASK and pixels is not None:
            st.caption("No mask yet: without one the whole image is redrawn (img2img).")
        if mask is not None and pixels is None:
            raise ValueError("An inpainting mask applies to a start image: upload the start "
                             "image above, or choose “No mask”.")
        if mask is not None:
            st.image(preview(pixels, mask), width=PREVIEW_WIDTH,
                     caption="Tinted: the region generated anew (before blur and padding).")
    if mask is None:
        return StartImage(pixels, strength)
    return StartImage(pixels, strength, mask, float(blur), int(padding))


def rectangle_mask(width, height, columns, rows):
    """A uint8 mask, white inside the rectangle `columns` x `rows` (percent ranges).

    Args:
        width: the mask's width in pixels.
        height: its height.
        columns: `(left, right)` in percent of the width.
        rows: `(top, bottom)` in percent of the height.
    """
    import numpy as np

    mask = np.zeros((height, width), np.uint8)
    left, right = (round(width * value / 100) for value in columns)
    top, bottom = (round(height * value / 100) for value in rows)
    mask[top:bottom, left:right] = 255
    return mask


def preview(pixels, mask):
    """The start image with the region to repaint tinted (uint8 (height, width, 3))."""
    import numpy as np

    weight = (mask.astype(np.float32) / 255.0)[..., None] * 0.5
    tinted = pixels * (1 - weight) + np.asarray(PREVIEW_TINT, np.float32) * weight
    return tinted.round().astype(np.uint8)


def _read_image(upload, width, height, mode, nearest=False):
    """An uploaded image as a uint8 array of `width` x `height` in Pillow `mode`."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(upload.getvalue())) as image:
            image = image.convert(mode)
    except (OSError, UnidentifiedImageError):
        raise ValueError(f"{upload.name!r} is not an image that can be read.") from None
    size = (int(width), int(height))
    if image.size != size:
        # A mask stays sharp: blur is the mask blur's job.
        image = image.resize(size, Image.NEAREST if nearest else Image.LANCZOS)
    return np.asarray(image)
