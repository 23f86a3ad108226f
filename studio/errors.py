"""Errors a user can fix, with messages that say how.

The CLI prints these as one message without a traceback; anything else is a
bug and keeps its traceback.
"""


class StudioError(Exception):
    """An error caused by the user's input or environment, not by a bug."""


class WeightsNotFoundError(StudioError, FileNotFoundError):
    """A weight file could not be found locally nor downloaded."""


class WeightsMismatchError(StudioError, ValueError):
    """A weight file is corrupt or does not fit the model it is loaded into."""


# Errors a user can fix: the CLI and the app's training process print these
# as one message, without a traceback.
USER_ERRORS = (StudioError, FileNotFoundError, NotADirectoryError, ValueError, PermissionError)
