"""Decodes one image file into the square RGB picture the model trains on.

Photos from phones, scrapes and drawing programs come in every mode Pillow
knows; each is brought to 8-bit sRGB the same way here: EXIF orientation
applied, transparency put on a chosen background, 16-bit values scaled
(Pillow's own conversion would clip them), an embedded colour profile
honoured, then an aspect-preserving centre crop resized to the resolution.
Anything that stops a file from being used raises `UnusableImageError` with
the reason a person can act on.
"""

import io

import numpy as np
from PIL import Image, ImageColor, ImageOps, UnidentifiedImageError

try:
    from PIL import ImageCms
except ImportError:  # Pillow built without littlecms: profiles are ignored.
    ImageCms = None

# What the builder reads. `.gif` and `.tif(f)` are read too, so that an
# animated GIF or a multi-page TIFF gets a reason rather than being ignored.
SUPPORTED_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# Image formats people drop into folders that Pillow cannot decode: reported,
# with a hint, instead of being silently ignored.
UNSUPPORTED_IMAGE_EXTENSIONS = (
    ".heic", ".heif", ".avif", ".jxl", ".svg", ".psd", ".dng", ".cr2", ".cr3",
    ".nef", ".arw", ".raf", ".orf", ".rw2",
)
# 16-bit samples go to 8 bits by dividing by 257 (65535 / 255): white stays white.
SIXTEEN_BIT_MAX = 65535
SIXTEEN_TO_EIGHT_BIT = 257
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# Pillow shrinks in steps of at most this factor before the Lanczos pass:
# nearly the quality of a full Lanczos resize at a fraction of the time.
REDUCING_GAP = 3.0
# Phones write MPO files (a JPEG plus depth maps or previews): the first
# frame is the photo, so these are not animations.
_MULTI_PICTURE_FORMATS = ("MPO",)
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")

REASON_EMPTY = "empty file (0 bytes)"
REASON_NOT_AN_IMAGE = "not an image, or a format Pillow cannot read"
REASON_CORRUPT = "truncated or corrupt image data"
REASON_ANIMATED = "animated image ({frames} frames); use a still image"
REASON_TOO_SMALL = "too small: {width}x{height} pixels, the shorter side must be at least {min_size}"
REASON_BOMB = (
    "decompression bomb: the header claims more than {limit} pixels, Pillow's limit"
)
REASON_UNSUPPORTED = "unsupported format {extension}; convert it to JPEG or PNG"


class UnusableImageError(ValueError):
    """A file that cannot be used for training; `reason` says why."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def parse_background(color):
    """An RGB triple from a colour name (`"white"`), `"#rrggbb"` or a triple.

    Raises:
        ValueError: for anything else.
    """
    try:
        if isinstance(color, str):
            rgb = ImageColor.getrgb(color)[:3]
        else:
            rgb = tuple(int(c) for c in color)
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise ValueError
    except (ValueError, TypeError):
        raise ValueError(
            "`background` must be a colour name ('white'), '#rrggbb' or an RGB "
            f"triple of 0-255 integers. Received: background={color!r}"
        ) from None
    return rgb


def decode_training_image(data, resolution, background=(255, 255, 255), min_size=1):
    """Decodes image file bytes into a `(resolution, resolution, 3)` uint8 array.

    Args:
        data: bytes, the whole file.
        resolution: int, side of the square output.
        background: RGB triple that transparent areas are composited onto.
        min_size: int, smallest accepted shorter side, in pixels of the file
            as stored.

    Returns:
        uint8 array of shape `(resolution, resolution, 3)`: the upright image,
        centre-cropped to a square and resized with Lanczos filtering.

    Raises:
        UnusableImageError: for an empty, unreadable, truncated or animated
            file, one too small, or one over Pillow's decompression-bomb limit.
    """
    if not data:
        raise UnusableImageError(REASON_EMPTY)
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise UnusableImageError(
            REASON_BOMB.format(limit=2 * Image.MAX_IMAGE_PIXELS)
        ) from None
    except UnidentifiedImageError:
        raise UnusableImageError(REASON_NOT_AN_IMAGE) from None
    except Exception:  # Pillow's parsers raise many kinds on a broken header.
        raise UnusableImageError(REASON_CORRUPT) from None
    with image:
        try:
            frames = getattr(image, "n_frames", 1)
        except Exception:
            raise UnusableImageError(REASON_CORRUPT) from None
        if frames > 1 and image.format not in _MULTI_PICTURE_FORMATS:
            raise UnusableImageError(REASON_ANIMATED.format(frames=frames))
        width, height = image.size
        if min(width, height) < min_size:
            raise UnusableImageError(
                REASON_TOO_SMALL.format(width=width, height=height, min_size=min_size)
            )
        if image.format in ("JPEG", "MPO"):
            # Decode big photos at 1/2, 1/4 or 1/8 scale (the JPEG codec does
            # it for free), never below the output resolution.
            image.draft(image.mode, (resolution, resolution))
        try:
            image.load()
        except Exception:
            raise UnusableImageError(REASON_CORRUPT) from None
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image, background)
    return _center_crop(image, resolution)


def _to_rgb(image, background):
    if image.mode in SIXTEEN_BIT_MODES:
        # Pillow's convert("L") clips 16-bit values at 255 instead of scaling.
        values = np.clip(np.asarray(image).astype(np.float64), 0, SIXTEEN_BIT_MAX)
        grey = np.round(values / SIXTEEN_TO_EIGHT_BIT).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, tuple(background) + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if image.mode in ("RGB", "CMYK") and image.info.get("icc_profile"):
        return _profile_to_srgb(image)
    return image.convert("RGB")


def _profile_to_srgb(image):
    """Converts through the embedded ICC profile (Display P3, CMYK press profiles)."""
    if ImageCms is None:
        return image.convert("RGB")
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        srgb = ImageCms.createProfile("sRGB")
        return ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        # A broken profile is common enough; the plain conversion is close.
        return image.convert("RGB")


def _center_crop(image, resolution):
    width, height = image.size
    side = min(width, height)
    # Whole pixels, cropped before resizing: the filter then sees nothing of
    # what was cut away (a box on `resize` would blend it into the borders).
    left = (width - side) // 2
    top = (height - side) // 2
    square = image.crop((left, top, left + side, top + side)).resize(
        (resolution, resolution), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP
    )
    return np.asarray(square, dtype=np.uint8)
