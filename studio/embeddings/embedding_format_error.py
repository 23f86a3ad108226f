"""Errors raised for embedding files that cannot, or must not, be read."""

from studio.errors import StudioError


class EmbeddingFormatError(StudioError, ValueError):
    """A file is not a textual-inversion embedding we can read, or is damaged.

    A `ValueError`, so the command line prints it as one message.
    """


class UnsafePickleError(EmbeddingFormatError):
    """A PyTorch file asks to run code (a global outside the tensor allow-list).

    Raised before anything of the file's making runs: the unpickler never
    imports nor calls what the file names.
    """
