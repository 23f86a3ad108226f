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
# File systems limit a name's bytes, not its characters (4 bytes each at worst).
MAX_NAME_BYTES = 255
# Images declaring more pixels than this are refused unread (Pillow's own
# decompression-bomb limit is twice its MAX_IMAGE_PIXELS, about 179 MP).
MAX_IMAGE_PIXELS = 64 * 1024 * 1024
# Letters and digits of any script, `.`, `_`, `-`; everything else
# (separators, control and format characters, spaces, punctuation) is unsafe.
_UNSAFE_CHARACTERS = re.compile(r"[^\w.-]+")


class UploadRejected(StudioError, ValueError):
    """An uploaded file that the app does not accept; the message says why."""


def safe_file_name(name, extensions):
    """A file name made from an uploaded name that is safe as a path component.

    Only the last path component of `name` counts (for `/`, `\\` and `..`
    alike, full-width forms included); accents are dropped (`été` -> `ete`)
    but letters of every script stay (`日本語.png`); other characters
    (control and format characters, spaces, punctuation) become `-`; no
    leading dot (no hidden files, no `..`); at most 80 characters.

    Args:
        name: the name the browser sent, never trusted.
        extensions: the accepted extensions, lower case with their dot.

    Returns:
        A name such as `evil.png`, with its extension in lower case.

    Raises:
        UploadRejected: the extension is not one of `extensions`.
    """
    # NFKD first, so that full-width `／` and `．` are separators and dots too.
    base = unicodedata.normalize("NFKD", str(name)).replace("\\", "/").split("/")[-1]
    base = "".join(character for character in base if unicodedata.category(character) != "Mn")
    base = unicodedata.normalize("NFC", base)
    stem, extension = os.path.splitext(base)
    extension = extension.lower()
    if extension not in extensions:
        raise UploadRejected(
            f"{display_name(name)!r} is not an accepted file: the extension must be one of "
            f"{', '.join(extensions)}. Received: {extension or 'no extension'}"
        )
    stem = _UNSAFE_CHARACTERS.sub("-", stem).strip(".-_") or "upload"
    stem = stem[: MAX_NAME_LENGTH - len(extension)]
    while len((stem + extension).encode("utf-8")) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return stem + extension


def display_name(name):
    """The file name the user sees in messages: the last component of what
    the browser sent, never a folder of the server."""
    return str(name).replace("\\", "/").split("/")[-1] or str(name)


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
    name = display_name(name)
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
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError(f"{width} x {height} pixels")
            image.verify()
    except Image.DecompressionBombError:
        # A small file declaring a huge image: decoding it would fill memory.
        raise UploadRejected(
            f"{display_name(name)!r} declares too many pixels for a training image "
            f"(more than {MAX_IMAGE_PIXELS // 2**20} megapixels; a possible decompression "
            "bomb), so it was not read. Upload a smaller image."
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UploadRejected(
            f"{display_name(name)!r} is not an image that can be read (PNG, JPEG, WebP or BMP)."
        ) from None
    return _write_new(folder, file_name, data)


def save_image_uploads(folder, uploads, known_hashes=None):
    """Saves a batch of uploaded images: a rejected one never stops the others.

    Args:
        folder: where the images go.
        uploads: `(name, data)` pairs.
        known_hashes: None, or `{sha256 of the bytes: file name}` of the
            images already in `folder`: an upload with the same content as
            one of them (or as an earlier upload of the batch) is rejected
            as a duplicate.

    Returns:
        A list of `(path, None)` for each saved image and `(None, message)`
        for each rejected one, in the order of `uploads`.
    """
    import hashlib

    results = []
    for name, data in uploads:
        digest = hashlib.sha256(data).hexdigest()
        if known_hashes is not None and digest in known_hashes:
            results.append((None, f"{display_name(name)!r} is the same picture as "
                            f"{known_hashes[digest]!r}, already in the data set; it was left out."))
            continue
        try:
            path = save_image_upload(folder, name, data)
        except UploadRejected as error:
            results.append((None, str(error)))
            continue
        if known_hashes is not None:
            known_hashes[digest] = os.path.basename(path)
        results.append((path, None))
    return results


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
        raise UploadRejected(
            f"{display_name(name)!r} is not an embedding file that can be read: "
            f"{_without_path(error, path, name)}"
        ) from None
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
        raise UploadRejected(
            f"{display_name(name)!r} is not a LoRA file that can be read: "
            f"{_without_path(error, path, name)}"
        ) from None
    return path


def _without_path(error, path, name):
    """A reader's message with the server's path of the file replaced by the user's name."""
    return str(error).replace(path, display_name(name)).replace(
        os.path.dirname(path) + os.sep, "")


def _write_new(folder, file_name, data):
    os.makedirs(folder, exist_ok=True)
    path = unused_path(folder, file_name)
    # Exclusive creation: a file appearing meanwhile is never overwritten.
    with open(path, "xb") as file:
        file.write(data)
    return path
