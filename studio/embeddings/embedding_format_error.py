"""Errors raised for embedding files that cannot, or must not, be read."""

from studio.tensor_files.tensor_file_error import TensorFileError, UnsafePickleError

# One class for both: the readers in `studio.tensor_files` raise it for a
# damaged file, the embedding layer for a well-formed file that is not an
# embedding, and `except EmbeddingFormatError` catches either.
EmbeddingFormatError = TensorFileError

__all__ = ["EmbeddingFormatError", "UnsafePickleError"]
