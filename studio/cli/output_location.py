"""`writing_to(path)`: a command's output written whole or not at all, a failure named."""

import contextlib
import os

from studio.errors import OutputLocationError, is_output_location_error, os_error_reason


@contextlib.contextmanager
def writing_to(path, is_folder=False):
    """Runs the block that writes the output `path`; on an error, leaves nothing new behind.

    The folders the block made for `path` (missing when it started) are
    removed again if it fails and they are empty; the files themselves are
    written atomically (`studio.files.atomic_write`), so a failed write
    leaves none. An `OSError` about the location (read-only, full, ...) is
    raised again as an `OutputLocationError` that names `path`, as writers
    that fail in the middle of a file do not.

    Args:
        path: the output file, or folder with `is_folder`.
        is_folder: whether `path` is a folder the block writes into.
    """
    path = os.path.abspath(os.fspath(path))
    missing = []
    folder = path if is_folder else os.path.dirname(path)
    while folder and not os.path.exists(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    try:
        yield
    except Exception as error:
        for made in missing:  # Deepest first.
            with contextlib.suppress(OSError):
                os.rmdir(made)
        if is_output_location_error(error) and not error.filename:
            raise OutputLocationError(f"cannot write {path}: {os_error_reason(error)}.") from error
        raise
