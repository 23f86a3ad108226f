"""Error raised for model files that cannot be read or do not fit our networks."""

from studio.errors import StudioError


class CheckpointFormatError(StudioError, ValueError):
    """A model file or folder is damaged, incomplete, or not laid out as expected.

    A `ValueError`, so the command line prints it as one message.
    """
