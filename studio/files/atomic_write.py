"""Writing a file so that readers see the old file or the whole new one."""

import os
import secrets

# Temporary files start with a dot (hidden) and end with this suffix, so a
# crash that leaves one behind is recognisable.
TEMPORARY_SUFFIX = ".partial"
# Created files get these permissions less the umask, as `open(path, "w")`.
NEW_FILE_MODE = 0o666


def write_file_atomically(path, data):
    """Writes `data` to `path` through a temporary file in the same folder.

    The bytes go to a hidden temporary file, are flushed to disk, and the
    temporary file is renamed over `path` (`os.replace`, atomic on POSIX
    and Windows), so a crash never leaves a half-written file at `path`.
    Missing parent folders are created.

    Args:
        path: the file to write.
        data: bytes.

    Returns:
        `path`.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(
        folder,
        f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}",
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    descriptor = os.open(temporary, flags, NEW_FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.remove(temporary)
        except FileNotFoundError:
            pass
        raise
    return path
