"""Writes PyTorch zip files (what `torch.save` writes) without PyTorch.

The pickle is written opcode by opcode (protocol 2, as `torch.save` does):
every tensor becomes `torch._utils._rebuild_tensor_v2(<storage>, 0, shape,
stride, False, collections.OrderedDict())` with the storage as a persistent
id `('storage', torch.FloatStorage, '<key>', 'cpu', numel)`, and its bytes
go to `<archive>/data/<key>`, 64-byte aligned, as PyTorch's own writer
aligns them. Files load with `torch.load(path, weights_only=True)`.
"""

import io
import math
import struct
import zipfile

import numpy as np

PICKLE_PROTOCOL = 2
# Members torch.save writes besides data.pkl and the storages: the archive
# format version, the storage alignment, and the storages' byte order.
FORMAT_VERSION = b"1"
STORAGE_ALIGNMENT = 64
ARCHIVE_VERSION = b"3\n"
BYTEORDER = b"little"
# PyTorch pads local zip headers with an extra field of this id ("FB").
PADDING_FIELD_ID = b"FB"
LOCAL_HEADER_BYTES = 30
EXTRA_FIELD_HEADER_BYTES = 4
# A fixed date keeps output byte-identical from run to run.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# numpy dtype -> torch storage class, for the dtypes embeddings use.
STORAGE_CLASSES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.int64): "LongStorage",
}

# Pickle opcodes (see `pickletools`).
PROTO, STOP = b"\x80", b"."
MARK, EMPTY_DICT, SETITEMS, EMPTY_LIST, APPENDS = b"(", b"}", b"u", b"]", b"e"
EMPTY_TUPLE, TUPLE = b")", b"t"
BINUNICODE, BININT1, BININT2, BININT, LONG1 = b"X", b"K", b"M", b"J", b"\x8a"
BINFLOAT, NEWTRUE, NEWFALSE, NONE = b"G", b"\x88", b"\x89", b"N"
GLOBAL, BINPERSID, REDUCE = b"c", b"Q", b"R"


def encode_torch_file(obj, archive_name="archive"):
    """Returns the bytes of a PyTorch zip file holding `obj`.

    Args:
        obj: nested dicts (string keys), lists, tuples, strings, ints,
            floats, bools, None and numpy arrays (float32, float16, float64,
            int64), which become torch tensors.
        archive_name: the folder inside the zip (torch uses the file's stem).

    Returns:
        bytes.

    Raises:
        ValueError: `obj` holds something else.
    """
    storages = []
    pickle = io.BytesIO()
    pickle.write(PROTO + bytes([PICKLE_PROTOCOL]))
    _write(pickle, obj, storages)
    pickle.write(STOP)

    prefix = f"{archive_name}/"
    members = [
        ("data.pkl", pickle.getvalue()),
        (".format_version", FORMAT_VERSION),
        (".storage_alignment", str(STORAGE_ALIGNMENT).encode()),
        ("byteorder", BYTEORDER),
        *((f"data/{key}", data) for key, data in enumerate(storages)),
        ("version", ARCHIVE_VERSION),
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(prefix + name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.extra = _alignment_padding(buffer.tell(), len(info.filename.encode()))
            archive.writestr(info, data)
    return buffer.getvalue()


def _alignment_padding(header_offset, name_length):
    """An extra field that puts the member's data on a 64-byte boundary."""
    unpadded = header_offset + LOCAL_HEADER_BYTES + name_length + EXTRA_FIELD_HEADER_BYTES
    padding = -unpadded % STORAGE_ALIGNMENT
    return PADDING_FIELD_ID + struct.pack("<H", padding) + b"Z" * padding


def _write(out, obj, storages):
    if obj is None:
        out.write(NONE)
    elif obj is True or obj is False:
        out.write(NEWTRUE if obj else NEWFALSE)
    elif isinstance(obj, (int, np.integer)):
        _write_int(out, int(obj))
    elif isinstance(obj, (float, np.floating)):
        out.write(BINFLOAT + struct.pack(">d", float(obj)))
    elif isinstance(obj, str):
        _write_str(out, obj)
    elif isinstance(obj, dict):
        out.write(EMPTY_DICT)
        if obj:
            out.write(MARK)
            for key, value in obj.items():
                if not isinstance(key, str):
                    raise ValueError(
                        f"Dict keys must be strings. Received: key {key!r}"
                    )
                _write_str(out, key)
                _write(out, value, storages)
            out.write(SETITEMS)
    elif isinstance(obj, list):
        out.write(EMPTY_LIST)
        if obj:
            out.write(MARK)
            for item in obj:
                _write(out, item, storages)
            out.write(APPENDS)
    elif isinstance(obj, tuple):
        _write_tuple(out, obj, storages)
    elif isinstance(obj, np.ndarray):
        _write_tensor(out, obj, storages)
    else:
        raise ValueError(
            "Only dicts, lists, tuples, strings, numbers, None and numpy arrays "
            f"can be written. Received: {type(obj).__name__}"
        )


def _write_int(out, value):
    if 0 <= value < 2**8:
        out.write(BININT1 + bytes([value]))
    elif 0 <= value < 2**16:
        out.write(BININT2 + struct.pack("<H", value))
    elif -(2**31) <= value < 2**31:
        out.write(BININT + struct.pack("<i", value))
    else:
        length = (value.bit_length() + 8) // 8  # Two's complement, with a sign bit.
        out.write(LONG1 + bytes([length]) + value.to_bytes(length, "little", signed=True))


def _write_str(out, text):
    data = text.encode("utf-8")
    out.write(BINUNICODE + struct.pack("<I", len(data)) + data)


def _write_tuple(out, items, storages):
    if not items:
        out.write(EMPTY_TUPLE)
        return
    out.write(MARK)
    for item in items:
        _write(out, item, storages)
    out.write(TUPLE)


def _write_global(out, module, name):
    out.write(GLOBAL + f"{module}\n{name}\n".encode("ascii"))


def _write_tensor(out, array, storages):
    storage_class = STORAGE_CLASSES.get(array.dtype)
    if storage_class is None:
        raise ValueError(
            f"Arrays must have one of the dtypes {sorted(map(str, STORAGE_CLASSES))}. "
            f"Received: dtype={array.dtype}"
        )
    array = np.ascontiguousarray(array, array.dtype.newbyteorder("<"))
    key = str(len(storages))
    storages.append(array.tobytes())
    shape = tuple(int(size) for size in array.shape)
    # Row-major strides, in elements.
    stride = tuple(math.prod(shape[index + 1 :]) for index in range(len(shape)))

    _write_global(out, "torch._utils", "_rebuild_tensor_v2")
    out.write(MARK)
    out.write(MARK)
    _write_str(out, "storage")
    _write_global(out, "torch", storage_class)
    _write_str(out, key)
    _write_str(out, "cpu")
    _write_int(out, int(array.size))
    out.write(TUPLE + BINPERSID)
    _write_int(out, 0)  # Storage offset.
    _write_tuple(out, shape, storages)
    _write_tuple(out, stride, storages)
    out.write(NEWFALSE)  # requires_grad
    _write_global(out, "collections", "OrderedDict")  # No backward hooks.
    out.write(EMPTY_TUPLE + REDUCE)
    out.write(TUPLE + REDUCE)
