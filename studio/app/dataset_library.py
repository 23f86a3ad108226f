"""The app's data sets: folders of training images (and captions) under `datasets/`."""

import hashlib
import os
import re
import shutil

from studio.app.safe_uploads import IMAGE_EXTENSIONS
from studio.errors import InvalidInputError

_SLUG = re.compile(r"[^a-z0-9]+")
CAPTION_EXTENSION = ".txt"
# Fewer images than this rarely teach a concept apart from its backgrounds.
FEW_IMAGES = 3


def dataset_slug(name):
    """The folder name of a data set called `name`: `../../etc/my set é!` -> `etc-my-set-e`."""
    import unicodedata

    text = unicodedata.normalize("NFKD", str(name))
    text = "".join(c for c in text if unicodedata.category(c) != "Mn").lower()
    return _SLUG.sub("-", text).strip("-")


def content_hash(data):
    """The sha256 of an image's bytes, as `ImageFolder.content_hashes` has them."""
    return hashlib.sha256(data).hexdigest()


class DatasetLibrary:
    """The data sets in the app's `datasets/` folder: list, create, rename, delete, edit.

    A data set is a folder of images; an image's caption is the `.txt`
    file of the same name beside it (as `studio.datasets.ImageFolder`
    reads it).

    Args:
        folder: the app's `datasets/` folder.
    """

    def __init__(self, folder):
        self.folder = os.fspath(folder)

    def names(self):
        """The data sets' names, the most recently changed first."""
        try:
            entries = [e for e in os.scandir(self.folder) if e.is_dir() and not e.name.startswith(".")]
        except OSError:
            return []
        return [e.name for e in sorted(entries, key=lambda e: e.stat().st_mtime, reverse=True)]

    def path(self, name):
        return os.path.join(self.folder, name)

    def create(self, name):
        """Makes the data set `name` (as `dataset_slug`); returns its folder name.

        Raises:
            InvalidInputError: the name has no letter or digit, or the data
                set exists (pick it instead: uploads never merge by accident).
        """
        slug = dataset_slug(name)
        if not slug:
            raise InvalidInputError(f"A data set's name needs letters or digits. Received: {name!r}")
        if os.path.exists(self.path(slug)):
            raise InvalidInputError(
                f"A data set named {slug!r} exists already: pick it in the list to add images "
                "to it, or choose another name.")
        os.makedirs(self.path(slug))
        return slug

    def rename(self, name, new_name):
        """Renames the data set; returns the new folder name (see `create` for the errors)."""
        slug = dataset_slug(new_name)
        if slug == name:
            return name
        if not slug:
            raise InvalidInputError(f"A data set's name needs letters or digits. Received: {new_name!r}")
        if os.path.exists(self.path(slug)):
            raise InvalidInputError(f"A data set named {slug!r} exists already; choose another name.")
        os.rename(self.path(name), self.path(slug))
        return slug

    def delete(self, name):
        shutil.rmtree(self.path(name))

    def images(self, name):
        """The image files of the data set, sorted."""
        try:
            files = os.listdir(self.path(name))
        except OSError:
            return []
        return sorted(f for f in files if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)

    def content_hashes(self, name):
        """`{sha256: image file}` of the data set's images."""
        hashes = {}
        for file in self.images(name):
            with open(os.path.join(self.path(name), file), "rb") as handle:
                hashes.setdefault(content_hash(handle.read()), file)
        return hashes

    def remove_image(self, name, file):
        """Removes an image and its caption from the data set."""
        os.remove(os.path.join(self.path(name), os.path.basename(file)))
        caption = self._caption_path(name, file)
        if os.path.exists(caption):
            os.remove(caption)

    def caption(self, name, file):
        """The image's caption ("" when it has none)."""
        try:
            with open(self._caption_path(name, file), encoding="utf-8") as handle:
                return handle.read().strip()
        except (OSError, UnicodeDecodeError):
            return ""

    def set_caption(self, name, file, text):
        """Writes the image's caption; an empty one removes the caption file."""
        from studio.files.atomic_write import write_file_atomically

        path = self._caption_path(name, file)
        text = text.strip()
        if text:
            write_file_atomically(path, (text + "\n").encode("utf-8"))
        elif os.path.exists(path):
            os.remove(path)

    def _caption_path(self, name, file):
        stem = os.path.splitext(os.path.basename(file))[0]
        return os.path.join(self.path(name), stem + CAPTION_EXTENSION)
