"""Writing files and folders so that readers see the old version or the whole new one.

Every write of the studio that must not be seen half done goes through
here: the data goes to a hidden temporary name in the same folder (same
file system, so the rename is atomic), is flushed to disk, and replaces
the target in one `os.replace`; on an exception the temporary is removed
and the target is untouched.

* `write_file_atomically(path, data)`: bytes held in memory.
* `atomic_file(path)`: a binary file to stream into (a model file of
  gigabytes, an image, a NumPy array).
* `atomic_path(path, suffix)`: a temporary path, for writers that take a
  path (`keras.Model.save_weights`, which wants its `.weights.h5` suffix).
* `atomic_folder(path, overwrite)`: a staging folder to fill (a saved
  model, a checkpoint).
"""

import contextlib
import os
import secrets
import shutil
import tempfile

# Temporary files and folders start with a dot (hidden) and files end with
# this suffix, so a crash that leaves one behind is recognisable.
TEMPORARY_SUFFIX = ".partial"


def write_file_atomically(path, data):
    """Writes `data` to `path` through a temporary file in the same folder.

    Missing parent folders are created; a new file gets the permissions
    `open(path, "w")` would give it (0o666 less the umask).

    Args:
        path: the file to write.
        data: bytes.

    Returns:
        `path`.
    """
    with atomic_file(path) as file:
        file.write(data)
    return os.fspath(path)


@contextlib.contextmanager
def atomic_file(path):
    """Yields a binary file to write; on success it replaces `path`.

    Args:
        path: the file to write (missing parent folders are created).
    """
    with _replacing(path, "") as temporary:
        with open(temporary, "xb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path to write; on success the file replaces `path`.

    For writers that take a path rather than a file. The file is flushed
    to disk before the rename.

    Args:
        path: the file to write (missing parent folders are created).
        suffix: the end the temporary name must have for the writer, e.g.
            `".weights.h5"` for `keras.Model.save_weights`.
    """
    with _replacing(path, suffix) as temporary:
        yield temporary
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())


@contextlib.contextmanager
def atomic_folder(path, overwrite=False):
    """Yields a staging folder to fill; on success it is renamed to `path`.

    Args:
        path: the folder to create.
        overwrite: whether an existing, non-empty `path` may be replaced.
            It is removed only after the new folder is complete.

    Raises:
        FileExistsError: `path` exists, is not empty, and `overwrite` is False
            (raised before anything is written).
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        if not os.path.isdir(path) or os.listdir(path):
            raise FileExistsError(
                f"{path} already exists and is not an empty folder; choose another "
                f"output or allow overwriting (--overwrite). Received: out={path!r}"
            )
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.")
    try:
        yield staging
        if os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
        if os.path.exists(path):
            # Moved aside first, so that `path` is never half old, half new.
            old = f"{staging}.old"
            os.replace(path, old)
            os.replace(staging, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def _replacing(path, suffix):
    """Yields a hidden temporary name beside `path`; renames it over `path` on success."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(
        folder,
        f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}"
        f"{TEMPORARY_SUFFIX}{suffix}",
    )
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
