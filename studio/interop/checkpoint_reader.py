"""Reads the tensors of a model file without loading them, and without pickle code.

`.safetensors` files go through the studio's own header reader; PyTorch
files (`.ckpt`, `.bin`, `.pt`) through its allow-listed unpickler, which
never imports nor calls what a file names. Both describe every tensor
(name, shape, dtype) first and read its values only on `.numpy()`, so a
model is recognised, or refused, before gigabytes are read.
"""

import os

from studio.tensor_files.safetensors_reader import looks_like_safetensors, read_safetensors
from studio.tensor_files.stored_tensor import StoredTensor
from studio.tensor_files.tensor_file_error import UnsafePickleError
from studio.tensor_files.torch_pickle_reader import is_torch_file, load_torch_pickle
from studio.interop.checkpoint_format_error import CheckpointFormatError

SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth")
# PyTorch Lightning (the original LDM training code) nests the weights here.
LIGHTNING_STATE_DICT_KEY = "state_dict"
# How many names an error message quotes from a long list.
NAMES_QUOTED = 5
# Lightning checkpoints (the original SD 1.x .ckpt files among them) also
# pickle training objects, which the allow-listed reader refuses.
_UNSAFE_CHECKPOINT_ADVICE = (
    "Training checkpoints (PyTorch Lightning's .ckpt) may pickle training objects "
    "besides the weights; if this file comes from a source you trust, convert it to "
    ".safetensors with a tool that runs pickles (diffusers, AUTOMATIC1111) and "
    "import that, or use the .safetensors release of the model."
)


def read_checkpoint(path):
    """Describes the tensors of a `.safetensors`, `.ckpt`, `.bin` or `.pt` file.

    Args:
        path: the file.

    Returns:
        `(tensors, metadata)`: a dict name -> `StoredTensor` (values read on
        `.numpy()`), and the safetensors metadata (an empty dict for
        PyTorch files). A Lightning checkpoint's `state_dict` is unwrapped.

    Raises:
        FileNotFoundError: `path` is not a file.
        CheckpointFormatError: the file is neither format or holds no tensors.
        TensorFileError: the file is truncated or damaged (raised by the
            shared readers of `studio.embeddings`).
        UnsafePickleError: a PyTorch file names a Python global that is not
            tensor data; nothing of the file was run.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The model file {path} does not exist. Received: path={path!r}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == SAFETENSORS_SUFFIX or looks_like_safetensors(path):
        return read_safetensors(path)
    if suffix in TORCH_SUFFIXES or is_torch_file(path):
        try:
            saved = load_torch_pickle(path)
        except UnsafePickleError as error:
            raise UnsafePickleError(f"{error} {_UNSAFE_CHECKPOINT_ADVICE}") from None
        return _state_dict(saved, path), {}
    with open(path, "rb") as file:
        start = file.read(8)
    raise CheckpointFormatError(
        f"{path} is neither a safetensors file nor a PyTorch file (empty, truncated, "
        f"or another format). Received: {os.path.getsize(path)} bytes starting "
        f"with {start!r}"
    )


def quote_names(names):
    """A short, sorted sample of `names` for error messages."""
    names = sorted(names)
    more = f" and {len(names) - NAMES_QUOTED} more" if len(names) > NAMES_QUOTED else ""
    return ", ".join(names[:NAMES_QUOTED]) + more


def _state_dict(saved, path):
    if isinstance(saved, dict) and isinstance(saved.get(LIGHTNING_STATE_DICT_KEY), dict):
        saved = saved[LIGHTNING_STATE_DICT_KEY]
    if not isinstance(saved, dict):
        raise CheckpointFormatError(
            f"{path} does not hold a state dict (names to tensors). "
            f"Received: a pickled {type(saved).__name__}"
        )
    # Training checkpoints also keep step counters and optimizer settings.
    tensors = {
        name: value
        for name, value in saved.items()
        if isinstance(name, str) and isinstance(value, StoredTensor)
    }
    if not tensors:
        raise CheckpointFormatError(
            f"{path} holds no tensors. Received: keys {quote_names(map(str, saved))}"
        )
    return tensors
