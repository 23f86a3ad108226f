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

A process killed inside a write (`kill -9`, power loss) leaves its
temporary behind; `remove_stale_temporaries(folder)` removes those of
writers that are no longer running.
"""

import contextlib
import os
import re
import secrets
import shutil
import tempfile

# Temporary files and folders start with a dot (hidden), hold the writer's
# process id and end with this suffix (then a writer's own suffix, or
# ".old"), so a crash that leaves one behind is recognisable.
TEMPORARY_SUFFIX = ".partial"
_TEMPORARY_NAME = re.compile(r"\..+\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.partial(?:\..*)?")


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
    # Named as the temporary files are (writer's id, `.partial`), so that
    # `remove_stale_temporaries` knows a dead writer's folder.
    staging = tempfile.mkdtemp(
        dir=parent, prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=TEMPORARY_SUFFIX
    )
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


def remove_stale_temporaries(folder):
    """Removes the temporary files and folders left in `folder` (and below) by dead writers.

    A temporary is known by its name (see `TEMPORARY_SUFFIX`); it is stale
    when the process whose id it holds no longer runs (the id of a running
    process, even a reused one, keeps it: better a leftover than a write
    broken). This process's own temporaries are kept.

    Args:
        folder: the folder to clean; missing is fine.

    Returns:
        The removed paths, sorted.
    """
    removed = []
    for root, folders, files in os.walk(os.fspath(folder)):
        for name in list(folders) + files:
            match = _TEMPORARY_NAME.fullmatch(name)
            if match is None or _process_running(int(match.group("pid"))):
                continue
            path = os.path.join(root, name)
            if name in folders:
                folders.remove(name)  # Not walked into: it is going.
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            removed.append(path)
    return sorted(removed)


def _process_running(pid):
    """True when a process `pid` exists (this one included)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # Someone else's process.
    except OSError:
        return False  # pid out of range
    return True
