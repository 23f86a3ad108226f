"""A tensor in a file whose shape and dtype are known before its data is read."""

import numpy as np

# dtype name -> numpy dtype of the stored bytes, little-endian. bfloat16 has no
# numpy dtype: its 16-bit patterns are read as uint16 and widened exactly to
# float32 by `StoredTensor.numpy`.
STORED_DTYPES = {
    "float64": "<f8",
    "float32": "<f4",
    "float16": "<f2",
    "bfloat16": "<u2",
    "int64": "<i8",
    "int32": "<i4",
    "int16": "<i2",
    "int8": "i1",
    "uint8": "u1",
    "bool": "?",
}
FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")
# A bfloat16 is the upper half of a float32's bits.
BFLOAT16_SHIFT = 16


def bfloat16_bits_to_float32(bits):
    """Widens bfloat16 bit patterns (uint16) to float32 values, exactly."""
    return (np.asarray(bits, np.uint32) << BFLOAT16_SHIFT).view(np.float32)


class StoredTensor:
    """A tensor in a file: shape and dtype now, the values when asked.

    Readers describe every tensor of a file first, so that a file can be
    recognised (or refused: a 4 GB checkpoint given by mistake) before any
    tensor data is read.

    Args:
        shape: tuple of ints.
        dtype: a key of `STORED_DTYPES` ("float32", "float16", ...).
        read: a function of no arguments returning the values as a numpy
            array of `shape` (bfloat16 values as their uint16 bit patterns).
    """

    def __init__(self, shape, dtype, read):
        if dtype not in STORED_DTYPES:
            raise ValueError(
                f"`dtype` must be one of {sorted(STORED_DTYPES)}. Received: dtype={dtype!r}"
            )
        self.shape = tuple(int(size) for size in shape)
        self.dtype = dtype
        self._read = read

    @property
    def is_float(self):
        return self.dtype in FLOAT_DTYPES

    def numpy(self):
        """Reads the values: float16/float32/float64 keep their dtype, bfloat16
        becomes float32 (exactly), all in native byte order."""
        array = np.asarray(self._read())
        if array.shape != self.shape:
            raise ValueError(
                f"A stored tensor's data does not match its declared shape {self.shape}. "
                f"Received: shape {array.shape}"
            )
        if self.dtype == "bfloat16":
            return bfloat16_bits_to_float32(array)
        return array.astype(array.dtype.newbyteorder("="), copy=False)

    def __repr__(self):
        return f"StoredTensor(shape={self.shape}, dtype={self.dtype!r})"
