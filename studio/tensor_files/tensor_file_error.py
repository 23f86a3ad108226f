"""Errors raised for tensor files that cannot, or must not, be read."""

from studio.errors import StudioError


class TensorFileError(StudioError, ValueError):
    """A file is not a tensor file we can read, or is damaged.

    A `ValueError`, so the command line prints it as one message.
    `studio.embeddings.TensorFileError` is this class: an embedding
    file that cannot be read is a tensor file that cannot be read.
    """


class UnsafePickleError(TensorFileError):
    """A PyTorch file asks to run code (a global outside the tensor allow-list).

    Raised before anything of the file's making runs: the unpickler never
    imports nor calls what the file names.
    """
