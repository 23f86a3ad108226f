"""A folder of a user's images, checked and decoded as the model will see them."""

import concurrent.futures
import hashlib
import logging
import os

import numpy as np

from studio.datasets.image_decoding import (
    REASON_UNSUPPORTED,
    SUPPORTED_EXTENSIONS,
    UNSUPPORTED_IMAGE_EXTENSIONS,
    UnusableImageError,
    decode_training_image,
    parse_background,
)
from studio.datasets.image_folder_report import ImageFolderReport
from studio.datasets.invalid_image_folder_error import InvalidImageFolderError
from studio.errors import InvalidInputError

logger = logging.getLogger(__name__)

CAPTION_EXTENSION = ".txt"
# Below half the training resolution an image is blown up more than 2x, and
# the model learns the blur along with the subject.
DEFAULT_MIN_SIZE_FRACTION = 0.5
# The VAE halves the image three times.
RESOLUTION_MULTIPLE = 8
# How a Python caller skips unusable files; commands name their option.
SKIP_OPTION = "skip_invalid=True"
# Decoding releases the GIL, so threads use every core; more than this buys
# nothing for a folder of a few dozen images.
MAX_DECODE_THREADS = 8

REASON_UNREADABLE = "cannot be read: {error}"
REASON_CAPTION_NOT_UTF8 = (
    "caption of {image} is not valid UTF-8 text (byte 0x{byte:02x} at offset "
    "{offset}); save it as UTF-8"
)
REASON_CAPTION_EMPTY = "caption of {image} is empty"


class ImageFolder:
    """The usable images of a folder, decoded as the model will see them.

    Every file with an image extension (jpg, jpeg, png, webp, bmp, gif, tif,
    tiff, in any case) is decoded: EXIF orientation applied, converted to
    8-bit RGB (transparent areas on `background`), centre-cropped to a
    square and resized to `resolution`. A `.txt` file with an image's name
    (`dog 1.txt` for `dog 1.JPG`) is its caption file, one caption per line.
    Sub-folders are not searched. The folder is only read, never written.

    All problems are gathered into one `ImageFolderReport` before anything
    is raised, so a person fixes everything in one go.

    Args:
        folder: str or path-like, the folder of images.
        resolution: int, side of the square images, a multiple of 8.
        min_size: int or None. Smallest accepted shorter side of a file, in
            pixels; None means half of `resolution`.
        background: colour that transparent areas are put on: a name
            (`"white"`), `"#rrggbb"` or an RGB triple.
        skip_invalid: bool. False (default) raises on any problem; True
            logs the report and keeps the usable images.
        skip_option: how the caller turns on `skip_invalid`, named in the
            error (the command line's `--skip-invalid-images`); default
            `skip_invalid=True`.

    Attributes:
        report: the `ImageFolderReport`.
        names: file names of the usable images, sorted.
        images: uint8 array `(len(names), resolution, resolution, 3)`.
        content_hashes: sha256 hex digest of each usable file's bytes.
        background_rgb: `background` as an RGB triple.
        captions: for each usable image, a tuple of the lines of its caption
            file, or None when it has none.

    Raises:
        FileNotFoundError: if `folder` does not exist.
        NotADirectoryError: if it is not a folder.
        InvalidImageFolderError: if the folder has no usable image, or has
            problems and `skip_invalid` is False.
        InvalidInputError: for a bad `resolution`, `min_size` or `background`.
    """

    def __init__(
        self,
        folder,
        resolution=512,
        min_size=None,
        background="white",
        skip_invalid=False,
        skip_option=SKIP_OPTION,
    ):
        if not isinstance(resolution, int) or resolution <= 0 or resolution % RESOLUTION_MULTIPLE:
            raise InvalidInputError(
                f"`resolution` must be a positive multiple of {RESOLUTION_MULTIPLE}. "
                f"Received: resolution={resolution!r}"
            )
        if min_size is not None and (not isinstance(min_size, int) or min_size < 1):
            raise InvalidInputError(
                f"`min_size` must be a positive integer or None. Received: min_size={min_size!r}"
            )
        self.folder = os.fspath(folder)
        self.resolution = resolution
        self.min_size = min_size
        self.background = background
        self.skip_invalid = skip_invalid
        self.skip_option = skip_option
        self.background_rgb = parse_background(background)
        self._load()

    @property
    def effective_min_size(self):
        """`min_size`, or its default for `resolution` when None."""
        if self.min_size is not None:
            return self.min_size
        return max(1, int(self.resolution * DEFAULT_MIN_SIZE_FRACTION))

    @property
    def paths(self):
        """Full paths of the usable images."""
        return [os.path.join(self.folder, name) for name in self.names]

    def __len__(self):
        return len(self.names)

    def _load(self):
        if not os.path.exists(self.folder):
            raise FileNotFoundError(
                f"Expected a folder of images. Received: {self.folder!r}, which does not exist"
            )
        if not os.path.isdir(self.folder):
            raise NotADirectoryError(
                f"Expected a folder of images. Received: {self.folder!r}, which is a file"
            )
        image_names, caption_files, problems, ignored = _sort_folder(self.folder)
        results = self._decode_all(image_names)

        names, images, hashes, captions = [], [], [], []
        for name in image_names:
            result = results[name]
            if isinstance(result, str):
                problems[name] = result
                continue
            caption_name = caption_files.get(os.path.splitext(name)[0])
            lines = None
            if caption_name is not None:
                lines = _read_caption(os.path.join(self.folder, caption_name), name)
                if isinstance(lines, str):
                    problems[caption_name] = lines
                    continue
            array, digest = result
            names.append(name)
            images.append(array)
            hashes.append(digest)
            captions.append(lines)

        self.report = ImageFolderReport(
            self.folder, names, sorted(problems.items()), sorted(ignored)
        )
        if not names:
            raise InvalidImageFolderError(
                self.report,
                "No usable image: add JPEG, PNG, WEBP or BMP photos of the concept.",
            )
        if self.report.problems:
            if not self.skip_invalid:
                raise InvalidImageFolderError(
                    self.report,
                    f"Fix or remove these files, or pass {self.skip_option} to train "
                    f"on the {len(names)} usable images.",
                )
            logger.warning("Skipping unusable files.\n%s", self.report.format())
        self.names = names
        self.images = np.stack(images)
        self.content_hashes = hashes
        self.captions = captions

    def _decode_all(self, names):
        """{name: (array, sha256) or reason}, decoded on a few threads."""
        from tqdm.auto import tqdm

        min_size = self.effective_min_size

        def decode(name):
            try:
                with open(os.path.join(self.folder, name), "rb") as file:
                    data = file.read()
            except OSError as error:
                return REASON_UNREADABLE.format(error=error.strerror or error)
            try:
                array = decode_training_image(
                    data, self.resolution, self.background_rgb, min_size
                )
            except UnusableImageError as error:
                return error.reason
            return array, hashlib.sha256(data).hexdigest()

        workers = max(1, min(MAX_DECODE_THREADS, os.cpu_count() or 1, len(names)))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            results = list(
                tqdm(
                    pool.map(decode, names),
                    total=len(names),
                    desc="Reading images",
                    unit="image",
                    # No bar when stderr is not a terminal (logs, tests).
                    disable=None,
                )
            )
        return dict(zip(names, results))

    def get_config(self):
        return {
            "folder": self.folder,
            "resolution": self.resolution,
            "min_size": self.min_size,
            "background": self.background,
            "skip_invalid": self.skip_invalid,
        }

    def __repr__(self):
        return (
            f"ImageFolder({self.folder!r}, resolution={self.resolution}, "
            f"images={len(self.names)})"
        )


def _sort_folder(folder):
    """(image names, {stem: caption name}, {name: reason}, ignored names)."""
    image_names, problems, ignored = [], {}, []
    caption_files = {}
    for name in sorted(os.listdir(folder)):
        if os.path.isdir(os.path.join(folder, name)):
            # Not searched; a broken link is not a folder, and is reported
            # as unreadable below.
            continue
        stem, extension = os.path.splitext(name)
        extension = extension.lower()
        if name.startswith("."):
            # .DS_Store, macOS "._photo.jpg" resource forks, editor files.
            ignored.append(name)
        elif extension in SUPPORTED_EXTENSIONS:
            image_names.append(name)
        elif extension in UNSUPPORTED_IMAGE_EXTENSIONS:
            problems[name] = REASON_UNSUPPORTED.format(extension=extension)
        elif extension == CAPTION_EXTENSION:
            caption_files.setdefault(stem, name)
        else:
            ignored.append(name)
    image_stems = {os.path.splitext(name)[0] for name in image_names}
    ignored += [name for stem, name in caption_files.items() if stem not in image_stems]
    return image_names, caption_files, problems, ignored


def _read_caption(path, image_name):
    """The caption file's non-blank lines, or the reason it cannot be used."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        return REASON_UNREADABLE.format(error=error.strerror or error)
    try:
        # utf-8-sig: Windows editors start UTF-8 files with a byte-order mark.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return REASON_CAPTION_NOT_UTF8.format(
            image=image_name, byte=data[error.start], offset=error.start
        )
    lines = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not lines:
        return REASON_CAPTION_EMPTY.format(image=image_name)
    return lines
