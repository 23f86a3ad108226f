"""Writes `.safetensors` files one tensor at a time.

`safetensors.numpy.save` builds the whole file in memory; a UNet is 3.4 GB
in float32, so this writer streams: it writes the header from the tensors'
shapes, then asks for each tensor's values in turn. The layout: 8 bytes
little-endian header length, the JSON header
`{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}`
padded with spaces, then the tensors' bytes back to back.
"""

import json
import math
import struct

import numpy as np

from studio.files.atomic_write import atomic_file

# dtype name -> (safetensors code, numpy dtype of the stored bytes).
WRITTEN_DTYPES = {"float32": ("F32", "<f4"), "float16": ("F16", "<f2")}
# Readers map the data section; aligning its start keeps every tensor aligned.
HEADER_ALIGNMENT = 8


def write_safetensors(path, tensors, metadata=None, dtype="float32"):
    """Writes `tensors` to `path` atomically (temporary file, then rename).

    Args:
        path: the file to write.
        tensors: list of `(name, shape, read)`: `read()` returns a float
            numpy array of `shape`; it is called once, when the tensor is
            written, so that one tensor at a time is in memory.
        metadata: dict of strings to strings, or None.
        dtype: `"float32"` or `"float16"`, the stored dtype of every tensor.

    Returns:
        `path`.

    Raises:
        ValueError: an unknown `dtype`, a repeated name, non-string
            metadata, or an array whose shape is not the announced one.
    """
    if dtype not in WRITTEN_DTYPES:
        raise ValueError(
            f"`dtype` must be one of {sorted(WRITTEN_DTYPES)}. Received: dtype={dtype!r}"
        )
    code, stored = WRITTEN_DTYPES[dtype]
    itemsize = np.dtype(stored).itemsize
    metadata = dict(metadata or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError(
            f"safetensors metadata must map strings to strings. Received: {metadata!r}"
        )
    header, offset = {}, 0
    for name, shape, _ in tensors:
        if name in header:
            raise ValueError(f"Each tensor name must be unique. Received: {name!r} twice")
        size = math.prod(shape) * itemsize
        header[name] = {
            "dtype": code,
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % HEADER_ALIGNMENT)
    with atomic_file(path) as file:
        file.write(struct.pack("<Q", len(header_bytes)))
        file.write(header_bytes)
        for name, shape, read in tensors:
            array = np.ascontiguousarray(read(), dtype=stored)
            if array.shape != tuple(shape):
                raise ValueError(
                    f"Tensor {name!r} was announced with shape {tuple(shape)}. "
                    f"Received: shape {array.shape}"
                )
            file.write(array.reshape(-1).view(np.uint8))
    return path
