"""Errors a user can fix, with messages that say how.

The CLI prints these as one message without a traceback; anything else is a
bug and keeps its traceback (`is_user_error` tells them apart,
`user_error_message` words them).
"""

import errno
import os


class StudioError(Exception):
    """An error caused by the user's input or environment, not by a bug."""


class WeightsNotFoundError(StudioError, FileNotFoundError):
    """A weight file could not be found locally nor downloaded."""


class WeightsMismatchError(StudioError, ValueError):
    """A weight file is corrupt or does not fit the model it is loaded into."""


class InvalidInputError(StudioError, ValueError):
    """A value the user gave (an option, a prompt, a file's content) breaks a rule.

    Raised by the studio's own checks, with a message that names the rule and
    the value. A plain `ValueError` (from Keras, NumPy, or a check of the
    studio's internals) is a bug.
    """


class SettingsError(InvalidInputError):
    """A run setting (a `studio train` option, a settings field) is invalid or missing."""


class OutputLocationError(StudioError, OSError):
    """The output location cannot be written (read-only, full, ...); says where and what to do."""


class StudioWarning(UserWarning):
    """Something the user asked for works, but likely not as they expect; says what will happen.

    The CLI prints it as one line (`studio CMD: warning: ...`).
    """


# Errors a user can fix: the CLI and the app's training process print these
# as one message, without a traceback. OSErrors with a `USER_ERRNOS` errno
# are too (see `is_user_error`).
USER_ERRORS = (StudioError, FileNotFoundError, NotADirectoryError, PermissionError,
               FileExistsError, IsADirectoryError)

# What an `OSError` about a file or folder the user chose means, and how to fix
# it. The studio reads and writes only where the user points it, so these
# are the user's environment, not bugs.
USER_ERRNOS = {
    errno.EROFS: "the file system is read-only; choose a location on a writable disk",
    errno.ENOSPC: "the disk is full; free some space, or choose a location on another disk",
    errno.EDQUOT: "the disk quota is exceeded; free some space, or choose a location on "
                  "another disk",
    errno.EACCES: "permission denied; choose a location you may write to, or change its "
                  "permissions",
    errno.EPERM: "the operation is not permitted there; choose another location",
    errno.EEXIST: "it already exists; remove it, or choose another location",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another location",
    errno.EISDIR: "it is a folder where a file is needed; choose a file name",
    errno.ENOENT: "no such file or folder; check the path",
}


def is_user_error(error):
    """True when `error` is the user's to fix (one line), False for a bug (traceback).

    Args:
        error: an exception.
    """
    if isinstance(error, USER_ERRORS):
        return True
    return isinstance(error, OSError) and error.errno in USER_ERRNOS


def user_error_message(error):
    """The one-line message of a user error: what, where, and how to fix it.

    An `OSError` that the system raised (it has an errno) is worded as
    "cannot use PATH: WHY; FIX."; the studio's own errors keep their
    message, which already says so.
    """
    if _is_system_os_error(error):
        where = f"cannot use {os.fsdecode(error.filename)}" if error.filename else (
            "cannot write the output")
        return f"{where}: {os_error_reason(error)}."
    return str(error)


def is_output_location_error(error):
    """True for an `OSError` the system raised about where the studio writes (read-only, full, ...).

    A missing file (ENOENT) is an input's error, and the studio's own
    errors already say where.
    """
    return _is_system_os_error(error) and error.errno != errno.ENOENT


def os_error_reason(error):
    """Why a user's `OSError` happened and how to fix it ("the disk is full; free ...")."""
    return USER_ERRNOS.get(error.errno) or error.strerror or str(error)


def _is_system_os_error(error):
    return (isinstance(error, OSError) and not isinstance(error, StudioError)
            and error.errno in USER_ERRNOS)
