"""Reads a `.safetensors` file's header first and its tensors on demand.

Our own reader rather than `safetensors.numpy.load_file`: it describes the
tensors without reading them (to recognise a file before loading it), reads
bfloat16 (numpy has no such dtype), and says which file is truncated and how.
The layout: 8 bytes little-endian header length, a JSON header
`{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}`,
then the tensors' bytes.
"""

import json
import math
import os
import struct

import numpy as np

from studio.tensor_files.tensor_file_error import TensorFileError
from studio.tensor_files.stored_tensor import STORED_DTYPES, StoredTensor

HEADER_LENGTH_BYTES = 8
# The safetensors specification caps the JSON header at 100 MB.
MAX_HEADER_BYTES = 100_000_000
METADATA_KEY = "__metadata__"
# safetensors dtype codes -> our dtype names.
SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def looks_like_safetensors(path):
    """True when the file starts like a safetensors file: a plausible header
    length, then '{'. A truncated file still looks like one, so that
    `read_safetensors` can say it is truncated."""
    with open(path, "rb") as file:
        start = file.read(HEADER_LENGTH_BYTES + 1)
    if len(start) < HEADER_LENGTH_BYTES + 1:
        return False
    (header_length,) = struct.unpack("<Q", start[:HEADER_LENGTH_BYTES])
    return 0 < header_length <= MAX_HEADER_BYTES and start[-1:] == b"{"


def read_safetensors(path):
    """Describes the tensors of a safetensors file.

    Args:
        path: the file.

    Returns:
        `(tensors, metadata)`: dict name -> `StoredTensor` (data read on
        `.numpy()`), in file order, and the header's string metadata.

    Raises:
        TensorFileError: the file is truncated or its header is invalid.
    """
    path = os.fspath(path)
    file_size = os.path.getsize(path)
    with open(path, "rb") as file:
        start = file.read(HEADER_LENGTH_BYTES)
        if len(start) < HEADER_LENGTH_BYTES:
            raise TensorFileError(
                f"{path} is too short to be a safetensors file. "
                f"Received: a file of {file_size} bytes"
            )
        (header_length,) = struct.unpack("<Q", start)
        if header_length > min(MAX_HEADER_BYTES, file_size - HEADER_LENGTH_BYTES):
            raise TensorFileError(
                f"{path} is truncated or not a safetensors file: its header claims "
                f"{header_length} bytes. Received: a file of {file_size} bytes"
            )
        header_bytes = file.read(header_length)
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TensorFileError(
            f"{path} is not a valid safetensors file: its header is not JSON ({error})."
        ) from None
    if not isinstance(header, dict):
        raise TensorFileError(
            f"{path} is not a valid safetensors file: its header is not a JSON object. "
            f"Received: {type(header).__name__}"
        )
    metadata = header.pop(METADATA_KEY, None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()
    ):
        raise TensorFileError(
            f"{path}: safetensors metadata must map strings to strings. Received: {metadata!r}"
        )
    data_start = HEADER_LENGTH_BYTES + header_length
    data_size = file_size - data_start
    tensors = {}
    for name, entry in header.items():
        shape, dtype, begin, end = _parse_entry(path, name, entry)
        expected = math.prod(shape) * np.dtype(STORED_DTYPES[dtype]).itemsize
        if end - begin != expected:
            raise TensorFileError(
                f"{path}: tensor {name!r} of shape {list(shape)} and dtype {dtype} needs "
                f"{expected} bytes. Received: data_offsets [{begin}, {end}]"
            )
        if end > data_size:
            raise TensorFileError(
                f"{path} is truncated: tensor {name!r} ends at byte {data_start + end} "
                f"of the file. Received: a file of {file_size} bytes"
            )
        tensors[name] = StoredTensor(
            shape, dtype, _reader(path, data_start + begin, shape, dtype)
        )
    return tensors, dict(metadata)


def _parse_entry(path, name, entry):
    try:
        dtype = SAFETENSORS_DTYPES[entry["dtype"]]
        shape = tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        valid = all(type(size) is int and size >= 0 for size in (*shape, begin, end))
    except (KeyError, TypeError, ValueError):
        valid = False
    if not valid or end < begin:
        raise TensorFileError(
            f"{path}: tensor {name!r} has an invalid or unsupported header entry "
            f"(dtypes: {sorted(SAFETENSORS_DTYPES)}). Received: {entry!r}"
        )
    return shape, dtype, begin, end


def _reader(path, offset, shape, dtype):
    def read():
        numpy_dtype = np.dtype(STORED_DTYPES[dtype])
        count = math.prod(shape)
        with open(path, "rb") as file:
            file.seek(offset)
            data = file.read(count * numpy_dtype.itemsize)
        if len(data) != count * numpy_dtype.itemsize:
            raise TensorFileError(f"{path} was truncated while it was being read.")
        return np.frombuffer(data, numpy_dtype, count).reshape(shape)

    return read
