"""Uploaded files saved under safe names, with their size and type checked."""

import io
import os
import re
import unicodedata

from studio.errors import StudioError

MEBIBYTE = 1024 * 1024
# Limits per kind of file: far above any real training image or embedding,
# far below what would fill the disk by mistake.
MAX_IMAGE_BYTES = 20 * MEBIBYTE
MAX_EMBEDDING_BYTES = 50 * MEBIBYTE
MAX_LORA_BYTES = 200 * MEBIBYTE
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
EMBEDDING_EXTENSIONS = (".safetensors", ".pt", ".bin")
LORA_EXTENSIONS = (".safetensors",)
MAX_NAME_LENGTH = 80
_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


class UploadRejected(StudioError, ValueError):
    """An uploaded file that the app does not accept; the message says why."""


def safe_file_name(name, extensions):
    """A file name made from an uploaded name that is safe as a path component.

    Only the last path component of `name` counts (for `/`, `\\` and `..`
    alike); characters other than letters, digits, `.`, `_` and `-` become
    `-`; no leading dot (no hidden files, no `..`); at most 80 characters.

    Args:
        name: the name the browser sent, never trusted.
        extensions: the accepted extensions, lower case with their dot.

    Returns:
        A name such as `evil.png`, with its extension in lower case.

    Raises:
        UploadRejected: the extension is not one of `extensions`.
    """
    base = str(name).replace("\\", "/").split("/")[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    stem, extension = os.path.splitext(base)
    extension = extension.lower()
    if extension not in extensions:
        raise UploadRejected(
            f"{name!r} is not an accepted file: the extension must be one of "
            f"{', '.join(extensions)}. Received: {extension or 'no extension'}"
        )
    stem = _UNSAFE_CHARACTERS.sub("-", stem).strip(".-_") or "upload"
    return stem[: MAX_NAME_LENGTH - len(extension)] + extension


def unused_path(folder, file_name):
    """`folder/file_name`, or `folder/stem-2.ext`, ... when that exists: never overwrites."""
    stem, extension = os.path.splitext(file_name)
    candidate, number = os.path.join(folder, file_name), 1
    while os.path.exists(candidate):
        number += 1
        candidate = os.path.join(folder, f"{stem}-{number}{extension}")
    return candidate


def check_size(name, data, limit):
    """Raises `UploadRejected` when `data` is over `limit` bytes."""
    if len(data) > limit:
        raise UploadRejected(
            f"{name!r} is too large: {len(data) / MEBIBYTE:.1f} MiB, the limit is "
            f"{limit / MEBIBYTE:.0f} MiB."
        )
    if not data:
        raise UploadRejected(f"{name!r} is empty (0 bytes).")


def save_image_upload(folder, name, data):
    """Saves an uploaded image into `folder` under a safe, unused name.

    The bytes must be an image Pillow can open (whatever the name says).

    Returns:
        The path written.

    Raises:
        UploadRejected: too large, empty, not an image type, or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    check_size(name, data, MAX_IMAGE_BYTES)
    file_name = safe_file_name(name, IMAGE_EXTENSIONS)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UploadRejected(
            f"{name!r} is not an image that can be read (PNG, JPEG, WebP or BMP)."
        ) from None
    return _write_new(folder, file_name, data)


def save_embedding_upload(folder, name, data):
    """Saves an uploaded embedding file into `folder` under a safe, unused name.

    The file must read as a textual-inversion embedding of a supported
    format (read without running pickle code).

    Returns:
        `(path, embedding)`.

    Raises:
        UploadRejected: too large, empty, wrong type, or not an embedding.
    """
    from studio.embeddings import load_embedding

    check_size(name, data, MAX_EMBEDDING_BYTES)
    file_name = safe_file_name(name, EMBEDDING_EXTENSIONS)
    path = _write_new(folder, file_name, data)
    try:
        embedding = load_embedding(path)
    except Exception as error:  # Any reader error: the file is not kept.
        os.remove(path)
        raise UploadRejected(f"{name!r} is not an embedding file that can be read: {error}") from None
    return path, embedding


def save_lora_upload(folder, name, data):
    """Saves an uploaded kohya LoRA `.safetensors` into `folder` under a safe, unused name.

    Returns:
        The path written.

    Raises:
        UploadRejected: too large, empty, wrong type, or not a LoRA file.
    """
    from studio.lora.lora_weights import LoRAWeights

    check_size(name, data, MAX_LORA_BYTES)
    file_name = safe_file_name(name, LORA_EXTENSIONS)
    path = _write_new(folder, file_name, data)
    try:
        LoRAWeights.load(path)
    except Exception as error:
        os.remove(path)
        raise UploadRejected(f"{name!r} is not a LoRA file that can be read: {error}") from None
    return path


def _write_new(folder, file_name, data):
    os.makedirs(folder, exist_ok=True)
    path = unused_path(folder, file_name)
    # Exclusive creation: a file appearing meanwhile is never overwritten.
    with open(path, "xb") as file:
        file.write(data)
    return path
