"""Generated image folders: every kind of file a user's folder holds.

Good images are built so that what the model must see is known without
running the code under test: flat colour regions whose centre crop is one
colour or two halves, at sizes where resizing keeps flat regions exact.
"""

import dataclasses
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

RESOLUTION = 32
RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
YELLOW = (255, 255, 0)
BLACK = (0, 0, 0)
EXIF_ORIENTATION_TAG = 0x0112
# Orientation 6: the stored pixels must be turned 90 degrees clockwise.
ORIENTATION_ROTATE_CW = 6
NON_ASCII_NAME = "café crème ñ.png"


def solid(width, height, color):
    return np.full((height, width, 3), color, dtype=np.uint8)


def png_with_claimed_size(width, height):
    """A tiny PNG whose header claims `width` x `height` pixels."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def jpeg_bytes(image, **options):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, subsampling=0, **options)
    return buffer.getvalue()


def write_good_images(folder):
    """Writes the usable images; returns {name: expected (32, 32, 3) uint8}."""
    expected = {}

    # RGBA: left half opaque red, right half fully transparent (on white).
    rgba = np.zeros((RESOLUTION, RESOLUTION, 4), np.uint8)
    rgba[:, : RESOLUTION // 2] = RED + (255,)
    rgba[:, RESOLUTION // 2 :] = BLUE + (0,)
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    want = solid(RESOLUTION, RESOLUTION, WHITE)
    want[:, : RESOLUTION // 2] = RED
    expected["rgba.png"] = want

    # Palette with a transparent index: top half green, bottom transparent.
    indices = np.zeros((RESOLUTION, RESOLUTION), np.uint8)
    indices[RESOLUTION // 2 :] = 1
    palette = Image.fromarray(indices, "P")
    palette.putpalette(list(GREEN) + [255, 0, 255] + [0, 0, 0] * 254)
    palette.save(folder / "palette.png", transparency=1)
    want = solid(RESOLUTION, RESOLUTION, WHITE)
    want[: RESOLUTION // 2] = GREEN
    expected["palette.png"] = want

    # 16-bit grey: 65535 is white, 32896 = 128 * 257 is mid grey.
    grey = np.full((RESOLUTION, RESOLUTION), 128 * 257, np.uint16)
    grey[:, : RESOLUTION // 2] = 65535
    Image.fromarray(grey).save(folder / "grey16.png")
    want = solid(RESOLUTION, RESOLUTION, (128, 128, 128))
    want[:, : RESOLUTION // 2] = WHITE
    expected["grey16.png"] = want

    # CMYK JPEG, 48x32 of pure magenta+yellow ink (red): the crop is all red.
    cmyk = Image.new("CMYK", (48, RESOLUTION), (0, 255, 255, 0))
    (folder / "cmyk.jpg").write_bytes(jpeg_bytes(cmyk))
    expected["cmyk.jpg"] = solid(RESOLUTION, RESOLUTION, RED)

    # EXIF-rotated JPEG. Upright it is 32 wide and 48 tall, red above blue;
    # the file stores it turned 90 degrees counter-clockwise, with the tag
    # that says to turn it back. The centre crop of the upright image has a
    # red top half and a blue bottom half.
    upright = solid(RESOLUTION, 48, BLUE)
    upright[:24] = RED
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = ORIENTATION_ROTATE_CW
    (folder / "rotated.jpg").write_bytes(jpeg_bytes(stored, exif=exif.tobytes()))
    want = solid(RESOLUTION, RESOLUTION, BLUE)
    want[: RESOLUTION // 2] = RED
    expected["rotated.jpg"] = want

    # Lossless WEBP of a gradient: comes back bit for bit.
    ramp = np.arange(RESOLUTION, dtype=np.uint8) * 8
    gradient = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], 255 - ramp[None, :]), -1)
    Image.fromarray(gradient.astype(np.uint8)).save(folder / "gradient.webp", lossless=True)
    expected["gradient.webp"] = gradient.astype(np.uint8)

    # Upper-case extension, landscape 64x48: black side strips are cropped
    # away, the yellow middle is resized from 48 to 32 and stays flat.
    wide = solid(64, 48, BLACK)
    wide[:, 8:56] = YELLOW
    Image.fromarray(wide).save(folder / "WIDE.PNG")
    expected["WIDE.PNG"] = solid(RESOLUTION, RESOLUTION, YELLOW)

    # Non-ASCII name with spaces, and its UTF-8 caption.
    Image.fromarray(solid(RESOLUTION, RESOLUTION, GREEN)).save(folder / NON_ASCII_NAME)
    (folder / "café crème ñ.txt").write_text("a {} in a café\n", encoding="utf-8")
    expected[NON_ASCII_NAME] = solid(RESOLUTION, RESOLUTION, GREEN)

    # BMP.
    Image.fromarray(solid(RESOLUTION, RESOLUTION, BLUE)).save(folder / "plain.bmp")
    expected["plain.bmp"] = solid(RESOLUTION, RESOLUTION, BLUE)
    return expected


def write_bad_files(folder):
    """Writes unusable files; returns {name: reason} as the report must give it."""
    photo = Image.fromarray(solid(64, 64, RED))
    whole = jpeg_bytes(photo)
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.jpg").write_text("these are my notes, not a photo\n")
    (folder / "empty.png").write_bytes(b"")
    Image.new("RGB", (1, 1), RED).save(folder / "tiny.png")
    frames = [Image.new("RGB", (RESOLUTION, RESOLUTION), color) for color in (RED, BLUE)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    (folder / "bomb.png").write_bytes(png_with_claimed_size(100000, 100000))
    (folder / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    os.symlink(folder / "gone.jpg", folder / "broken link.jpg")
    Image.fromarray(solid(RESOLUTION, RESOLUTION, RED)).save(folder / "latin1 caption.png")
    (folder / "latin1 caption.txt").write_bytes("a {} at the café".encode("latin-1"))
    limit = 2 * Image.MAX_IMAGE_PIXELS
    return {
        "IMG_0001.HEIC": "unsupported format .heic; convert it to JPEG or PNG",
        "animated.gif": "animated image (2 frames); use a still image",
        "bomb.png": (
            f"decompression bomb: the header claims more than {limit} pixels, "
            "Pillow's limit"
        ),
        "broken link.jpg": "cannot be read: No such file or directory",
        "empty.png": "empty file (0 bytes)",
        "latin1 caption.txt": (
            "caption of latin1 caption.png is not valid UTF-8 text (byte 0xe9 at "
            "offset 15); save it as UTF-8"
        ),
        "notes.jpg": "not an image, or a format Pillow cannot read",
        "tiny.png": "too small: 1x1 pixels, the shorter side must be at least 16",
        "truncated.jpg": "truncated or corrupt image data",
    }


def write_ignored_files(folder):
    (folder / "README.md").write_text("my cat toy\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x01")
    (folder / "orphan.txt").write_text("a caption without an image\n")
    return [".DS_Store", "README.md", "orphan.txt"]


@dataclasses.dataclass
class GeneratedFolder:
    path: object  # pathlib.Path
    expected: dict  # usable name -> (32, 32, 3) uint8 as the model must see it
    problems: dict  # unusable name -> reason, as the report must give it
    ignored: list  # names the report lists as ignored
    resolution: int = RESOLUTION

    def snapshot(self):
        """Names, bytes, modes and modification times of everything inside."""
        state = {}
        for entry in sorted(os.scandir(self.path), key=lambda e: e.name):
            info = entry.stat(follow_symlinks=False)
            with_data = entry.is_file(follow_symlinks=False)
            data = open(entry.path, "rb").read() if with_data else os.readlink(entry.path)
            state[entry.name] = (data, info.st_mtime_ns, info.st_mode)
        return state


@pytest.fixture
def good_folder(tmp_path):
    """A folder of usable images only."""
    folder = tmp_path / "good photos"
    folder.mkdir()
    return GeneratedFolder(folder, write_good_images(folder), {}, [])


@pytest.fixture
def mixed_folder(tmp_path):
    """Every case: usable images, unusable files and ignored files."""
    folder = tmp_path / "mixed photos"
    folder.mkdir()
    expected = write_good_images(folder)
    problems = write_bad_files(folder)
    ignored = write_ignored_files(folder)
    return GeneratedFolder(folder, expected, problems, ignored)


@pytest.fixture
def tokenizer():
    from studio.tokenizers import CLIPTokenizer

    tokenizer = CLIPTokenizer.byte_level(sequence_length=40)
    tokenizer.add_placeholder_tokens("<toy>", num_vectors=2)
    return tokenizer


class CountingEncoder:
    """A stand-in VAE encoder that counts its calls.

    Moments are 8x8 average pools: the mean is the pooled RGB plus their
    average (4 latent channels), the log-variance a constant.
    """

    LOGVAR = -2.0

    def __init__(self, downsampling_factor=8):
        self.calls = 0
        self.images = 0
        self.downsampling_factor = downsampling_factor

    def __call__(self, images):
        self.calls += 1
        images = np.asarray(images)
        self.images += len(images)
        batch, height, width, _ = images.shape
        f = self.downsampling_factor
        pooled = images.reshape(batch, height // f, f, width // f, f, 3).mean(axis=(2, 4))
        mean = np.concatenate([pooled, pooled.mean(-1, keepdims=True)], -1)
        return np.concatenate([mean, np.full_like(mean, self.LOGVAR)], -1).astype(np.float32)


@pytest.fixture
def counting_encoder():
    return CountingEncoder()


@pytest.fixture
def counting_encoder_class():
    return CountingEncoder
