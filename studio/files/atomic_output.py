"""Writing files and folders so that readers see the old version or the whole new one.

`studio.files.atomic_write` writes bytes held in memory; a model file
of gigabytes is streamed instead, hence these context managers.
"""

import contextlib
import os
import secrets
import shutil
import tempfile

# Leftovers of a crash are hidden and recognisable by this suffix.
TEMPORARY_SUFFIX = ".partial"


@contextlib.contextmanager
def atomic_file(path):
    """Yields a binary file to write; on success it is renamed to `path`.

    The data goes to a hidden temporary file in the same folder, is flushed
    to disk, and replaces `path` in one rename; on an exception the
    temporary file is removed and `path` is untouched. Missing parent
    folders are created.

    Args:
        path: the file to write.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(
        folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}"
    )
    try:
        with open(temporary, "xb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


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
