"""Reads PyTorch `.pt`/`.bin` files without PyTorch and without running their code.

A PyTorch file is a pickle: a program for Python's pickle machine, which
may import and call any function it names (`os.system` included). This
reader never imports nor calls what a file names. Its unpickler resolves
names through a short allow-list of tensor-rebuilding globals, each mapped
to our own numpy code; any other name is refused with `UnsafePickleError`
before anything runs. What the allow-list maps to only records shapes,
dtypes and where the bytes are; tensor data is read on demand, as plain
bytes, by `StoredTensor.numpy`.

Two layouts are read:
  * zip (`torch.save` since PyTorch 1.6): `<archive>/data.pkl` is the
    pickle, `<archive>/data/<key>` the raw bytes of each storage,
    `<archive>/byteorder` their byte order ("little" if absent);
  * legacy (`_use_new_zipfile_serialization=False`, PyTorch < 1.6): five
    pickles in a row (magic number, protocol version, system info, the
    object, the storage keys), then each storage as an int64 element count
    and its little-endian bytes.
"""

import io
import math
import os
import pickle
import re
import struct
import zipfile
from collections import OrderedDict

import numpy as np

from studio.tensor_files.tensor_file_error import TensorFileError
from studio.tensor_files.tensor_file_error import UnsafePickleError
from studio.tensor_files.stored_tensor import STORED_DTYPES, StoredTensor

PICKLE_MEMBER = "data.pkl"
# Torch pickles hold structure only (tensor bytes are separate): a full SD
# checkpoint's is about 1 MB. The cap keeps a crafted zip from being
# inflated into memory.
MAX_PICKLE_BYTES = 64 * 2**20
ZIP_MAGIC = b"PK\x03\x04"
# The legacy format opens with this number and protocol, both pickled.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
LEGACY_SIZE_BYTES = 8
# `byteorder` holds "little" or "big"; never read more than this of it.
MAX_BYTEORDER_BYTES = 16
# How torch names storage classes in pickles -> our dtype names.
STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}
# Storage keys name zip members: plain words only, never a path.
STORAGE_KEY_PATTERN = re.compile(r"\w+")


def is_torch_file(path):
    """True when the file starts like a PyTorch file (zip, or a protocol-2 pickle)."""
    with open(path, "rb") as file:
        start = file.read(len(ZIP_MAGIC))
    return start == ZIP_MAGIC or start[:2] == b"\x80\x02"


def load_torch_pickle(path, max_data_bytes=None):
    """Reads the object saved in a PyTorch file, with tensors as `StoredTensor`s.

    Nothing the file names is imported or called: only the allow-listed
    tensor rebuilders (`torch._utils._rebuild_tensor_v2`,
    `_rebuild_parameter`, `torch._tensor._rebuild_from_type_v2`, storage
    classes such as `torch.FloatStorage`, `collections.OrderedDict`) are
    understood, by our own numpy code.

    A zip member is never inflated beyond the size its storage declares
    (element count times dtype size): a member that holds more is refused
    before any of it is read, so a small file cannot expand to gigabytes.

    Args:
        path: a `.pt`/`.bin`/`.ckpt` file written by `torch.save`.
        max_data_bytes: refuse the file when its storages declare more
            bytes than this in all (checked before any tensor data is
            read); None for no limit (a full checkpoint).

    Returns:
        The saved object: dicts, lists, tuples, strings, numbers, with a
        `StoredTensor` for each tensor (its values are read on `.numpy()`).

    Raises:
        UnsafePickleError: the file names a global outside the allow-list
            (e.g. `os.system`); nothing was run.
        TensorFileError: the file is truncated, not a PyTorch file, or
            holds more data than it declares or than `max_data_bytes`.
    """
    path = os.fspath(path)
    budget = _DataBudget(path, max_data_bytes)
    if zipfile.is_zipfile(path):
        return _load_zip(path, budget)
    with open(path, "rb") as file:
        start = file.read(len(ZIP_MAGIC))
    if start == ZIP_MAGIC:
        raise TensorFileError(
            f"{path} starts like a PyTorch zip file but has no zip directory: "
            "it is truncated or damaged."
        )
    if start[:2] == b"\x80\x02":
        return _load_legacy(path, budget)
    raise TensorFileError(
        f"{path} is not a PyTorch file: it is neither a zip archive nor a pickle. "
        f"Received: first bytes {start!r}"
    )


class _DataBudget:
    """Adds up the bytes a file's storages declare; refuses past `limit`."""

    def __init__(self, path, limit):
        self._path = path
        self._limit = limit
        self._total = 0

    def add(self, nbytes):
        self._total += nbytes
        if self._limit is not None and self._total > self._limit:
            raise TensorFileError(
                f"{self._path} declares more tensor data than a file of this kind "
                f"holds: over {self._limit} bytes (the limit). Refused before reading it."
            )


def _storage_bytes(dtype, numel):
    return numel * np.dtype(STORED_DTYPES[dtype]).itemsize


# --- What the allow-list maps to -------------------------------------------


class _AllowedCallable:
    """One of our functions, standing in for an allow-listed global.

    Slots and a refusing `__setstate__`: a pickle cannot alter it (BUILD).
    """

    __slots__ = ("_function", "qualified_name")

    def __init__(self, function, qualified_name):
        self._function = function
        self.qualified_name = qualified_name

    def __call__(self, *args):
        return self._function(*args)

    def __setstate__(self, state):
        raise UnsafePickleError(
            f"The pickle tries to change `{self.qualified_name}` (BUILD); refused."
        )


class _Marker:
    """A storage class or tensor type named by a pickle: data, not callable."""

    __slots__ = ("qualified_name", "dtype")

    def __init__(self, qualified_name, dtype=None):
        self.qualified_name = qualified_name
        self.dtype = dtype

    def __setstate__(self, state):
        raise UnsafePickleError(
            f"The pickle tries to change `{self.qualified_name}` (BUILD); refused."
        )


class _Storage:
    """A torch storage: dtype, element count, and a way to read its bytes."""

    __slots__ = ("dtype", "numel", "_read_bytes", "_byteorder")

    def __init__(self, dtype, numel, read_bytes, byteorder="<"):
        self.dtype = dtype
        self.numel = numel
        self._read_bytes = read_bytes
        self._byteorder = byteorder

    def __setstate__(self, state):
        raise UnsafePickleError("The pickle tries to change a storage (BUILD); refused.")

    def array(self):
        numpy_dtype = np.dtype(STORED_DTYPES[self.dtype]).newbyteorder(self._byteorder)
        data = self._read_bytes()
        if len(data) < self.numel * numpy_dtype.itemsize:
            raise TensorFileError(
                f"A storage of {self.numel} {self.dtype} elements holds only "
                f"{len(data)} bytes: the file is truncated."
            )
        return np.frombuffer(data, numpy_dtype, self.numel)


class _PickledParameterDict(dict):
    """Stands in for `torch.nn.ParameterDict`, which early textual-inversion
    files (and A1111's from PyTorch 1.11) pickled whole: keeps its
    `_parameters` and nothing else, as A1111's loader does."""

    def __setstate__(self, state):
        parameters = state.get("_parameters") if isinstance(state, dict) else None
        if not isinstance(parameters, dict):
            raise TensorFileError(
                "A pickled ParameterDict has no `_parameters` dict. "
                f"Received: state of type {type(state).__name__}"
            )
        self.update(parameters)


def _is_count(value):
    return type(value) is int and value >= 0


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """Our `torch._utils._rebuild_tensor(_v2)`: a strided view of a storage."""
    size, stride = tuple(size), tuple(stride)
    if not (
        isinstance(storage, _Storage)
        and _is_count(storage_offset)
        and len(size) == len(stride)
        and all(_is_count(value) for value in (*size, *stride))
    ):
        raise TensorFileError(
            "A tensor record is malformed: expected (storage, offset, size, stride). "
            f"Received: {type(storage).__name__}, {storage_offset!r}, {size!r}, {stride!r}"
        )
    numel = math.prod(size)
    if numel > storage.numel:
        # Only expanded (stride 0) tensors are bigger than their storage;
        # refused, so that a few bytes cannot claim gigabytes.
        raise TensorFileError(
            f"A tensor of shape {size} has more elements than its storage "
            f"({storage.numel}); expanded tensors are not supported."
        )
    last = storage_offset + sum((length - 1) * step for length, step in zip(size, stride))
    if numel and last >= storage.numel:
        raise TensorFileError(
            f"A tensor of shape {size} reads past the end of its storage "
            f"({storage.numel} elements). The file is damaged."
        )

    def read():
        if not numel:
            return np.zeros(size, STORED_DTYPES[storage.dtype])
        data = storage.array()
        view = np.lib.stride_tricks.as_strided(
            data[storage_offset:],
            shape=size,
            strides=[step * data.itemsize for step in stride],
            writeable=False,
        )
        return np.array(view)

    return StoredTensor(size, storage.dtype, read)


def _rebuild_parameter(data, *unused):
    """Our `torch._utils._rebuild_parameter(_with_state)`: the tensor itself."""
    if not isinstance(data, StoredTensor):
        raise TensorFileError(
            f"A parameter record does not hold a tensor. Received: {type(data).__name__}"
        )
    return data


def _rebuild_from_type_v2(function, new_type, args, state=None):
    """Our `torch._tensor._rebuild_from_type_v2`: calls another allow-listed
    rebuilder; the tensor subclass (`new_type`) is dropped."""
    if not (
        isinstance(function, _AllowedCallable)
        and isinstance(new_type, _Marker)
        and isinstance(args, tuple)
    ):
        raise UnsafePickleError(
            "`torch._tensor._rebuild_from_type_v2` may only call an allow-listed "
            "tensor rebuilder on a tensor type. "
            f"Received: {type(function).__name__}, {type(new_type).__name__}"
        )
    return function(*args)


def _ordered_dict(*args):
    return OrderedDict(*args)


def _set(*args):
    return set(*args)


def _allowed_globals():
    functions = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("collections", "OrderedDict"): _ordered_dict,
        # Pickled modules (ParameterDict) keep their non-persistent buffer names in a set.
        ("builtins", "set"): _set,
        ("__builtin__", "set"): _set,
        ("torch", "Size"): tuple,
    }
    allowed = {
        key: _AllowedCallable(function, ".".join(key)) for key, function in functions.items()
    }
    for name, dtype in STORAGE_DTYPES.items():
        allowed[("torch", name)] = _Marker(f"torch.{name}", dtype)
    for key in (("torch", "Tensor"), ("torch.nn.parameter", "Parameter")):
        allowed[key] = _Marker(".".join(key))
    # A class (NEWOBJ needs one): ours, whose only behaviour is to keep a dict.
    allowed[("torch.nn.modules.container", "ParameterDict")] = _PickledParameterDict
    return allowed


ALLOWED_GLOBALS = _allowed_globals()


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, path, persistent_load=None):
        super().__init__(file)
        self._path = path
        self._persistent_load = persistent_load

    def find_class(self, module, name):
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafePickleError(
                f"{self._path} names the Python global `{module}.{name}`, which is not "
                "tensor data: unpickling it could run code, so the file is refused "
                "(nothing of it was run). Only torch's tensor and storage rebuilders "
                "are allowed in an embedding file. "
                f"Received: global {module}.{name}"
            )
        return allowed

    def persistent_load(self, persistent_id):
        if self._persistent_load is None:
            raise TensorFileError(
                f"{self._path}: a persistent id where none may be. "
                f"Received: {persistent_id!r}"
            )
        return self._persistent_load(persistent_id)


def _unpickle(file, path, persistent_load=None):
    try:
        return _SafeUnpickler(file, path, persistent_load).load()
    except TensorFileError:
        raise
    # Nothing of the file's making runs, so any other failure means a bad file.
    except Exception as error:  # noqa: BLE001
        raise TensorFileError(
            f"{path} is not a readable PyTorch file: its pickle is truncated or "
            f"malformed. Received: {type(error).__name__}: {error}"
        ) from None


def _storage_fields(path, persistent_id, length):
    """Checks a ('storage', storage_type, key, location, numel, ...) id."""
    if not (
        isinstance(persistent_id, tuple)
        and len(persistent_id) == length
        and persistent_id[0] in ("storage", b"storage")
    ):
        raise TensorFileError(
            f"{path}: unsupported persistent id; expected a {length}-tuple "
            f"('storage', ...). Received: {persistent_id!r}"
        )
    storage_type, key, numel = persistent_id[1], persistent_id[2], persistent_id[4]
    if isinstance(key, bytes):
        key = key.decode("ascii", "replace")
    if not (
        isinstance(storage_type, _Marker)
        and storage_type.dtype is not None
        and isinstance(key, str)
        and STORAGE_KEY_PATTERN.fullmatch(key)
        and _is_count(numel)
    ):
        raise TensorFileError(f"{path}: malformed storage record. Received: {persistent_id!r}")
    return storage_type.dtype, key, numel


# --- Zip layout --------------------------------------------------------------


def _load_zip(path, budget):
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [
                info
                for info in archive.infolist()
                if info.filename == PICKLE_MEMBER or info.filename.endswith("/" + PICKLE_MEMBER)
            ]
            if len(pickles) != 1:
                raise TensorFileError(
                    f"{path} is a zip file but not a PyTorch file: expected one "
                    f"`<archive>/{PICKLE_MEMBER}`. Received: members "
                    f"{archive.namelist()[:10]}"
                )
            info = pickles[0]
            if info.file_size > MAX_PICKLE_BYTES:
                raise TensorFileError(
                    f"{path}: its pickle is {info.file_size} bytes, more than the "
                    f"{MAX_PICKLE_BYTES} a PyTorch file needs. Refused."
                )
            prefix = info.filename[: -len(PICKLE_MEMBER)]
            sizes = {member.filename: member.file_size for member in archive.infolist()}
            names = set(sizes)
            byteorder = "<"
            if prefix + "byteorder" in names:
                with archive.open(prefix + "byteorder") as member:
                    text = member.read(MAX_BYTEORDER_BYTES)
                byteorder = {"little": "<", "big": ">"}.get(
                    text.decode("ascii", "replace").strip()
                )
                if byteorder is None:
                    raise TensorFileError(
                        f"{path}: `byteorder` must be 'little' or 'big'."
                    )
            pickle_bytes = archive.read(info)
    except zipfile.BadZipFile as error:
        raise TensorFileError(
            f"{path} is a damaged zip file. Received: {error}"
        ) from None

    storages = {}

    def persistent_load(persistent_id):
        dtype, key, numel = _storage_fields(path, persistent_id, length=5)
        if key not in storages:
            member = f"{prefix}data/{key}"
            if member not in names:
                raise TensorFileError(
                    f"{path} is missing the storage `{member}`: the file is incomplete."
                )
            nbytes = _storage_bytes(dtype, numel)
            if sizes[member] > nbytes:
                # torch writes exactly the storage's bytes; more is a
                # decompression bomb or a damaged file, refused unread.
                raise TensorFileError(
                    f"{path}: the zip member `{member}` inflates to {sizes[member]} "
                    f"bytes, but its storage declares {numel} {dtype} elements "
                    f"({nbytes} bytes). Refused without inflating it."
                )
            budget.add(nbytes)
            storages[key] = _Storage(
                dtype, numel, _zip_member_reader(path, member, nbytes), byteorder
            )
        return storages[key]

    return _unpickle(io.BytesIO(pickle_bytes), path, persistent_load)


def _zip_member_reader(path, member, nbytes):
    """Reads at most `nbytes` of `member` (the size its storage declares)."""
    cache = []

    def read_bytes():
        if not cache:
            try:
                with zipfile.ZipFile(path) as archive, archive.open(member) as file:
                    cache.append(file.read(nbytes))
            except (zipfile.BadZipFile, OSError, EOFError) as error:
                raise TensorFileError(
                    f"{path}: cannot read `{member}`; the file is damaged. Received: {error}"
                ) from None
        return cache[0]

    return read_bytes


# --- Legacy layout -----------------------------------------------------------


def _load_legacy(path, budget):
    roots = {}  # key -> [dtype, numel]
    locations = {}  # key -> (byte offset of the data, element count), filled last

    def root_reader(key):
        def read_bytes():
            offset, count = locations[key]
            itemsize = np.dtype(STORED_DTYPES[roots[key][0]]).itemsize
            with open(path, "rb") as file:
                file.seek(offset)
                return file.read(count * itemsize)

        return read_bytes

    def persistent_load(persistent_id):
        if isinstance(persistent_id, tuple) and persistent_id[:1] in (("module",), (b"module",)):
            raise TensorFileError(
                f"{path} holds a pickled module's source, not an embedding. Refused."
            )
        dtype, key, numel = _storage_fields(path, persistent_id, length=6)
        view = persistent_id[5]
        if key not in roots:
            budget.add(_storage_bytes(dtype, numel))
        roots.setdefault(key, [dtype, numel])
        if view is None:
            return _Storage(dtype, numel, root_reader(key))
        if not (isinstance(view, tuple) and len(view) == 3):
            raise TensorFileError(f"{path}: malformed storage view. Received: {view!r}")
        _, offset, view_numel = view
        if not (_is_count(offset) and _is_count(view_numel)):
            raise TensorFileError(f"{path}: malformed storage view. Received: {view!r}")
        root_read = root_reader(key)
        itemsize = np.dtype(STORED_DTYPES[dtype]).itemsize
        return _Storage(
            dtype,
            view_numel,
            lambda: root_read()[offset * itemsize : (offset + view_numel) * itemsize],
        )

    with open(path, "rb") as file:
        magic = _unpickle(file, path)
        if magic != LEGACY_MAGIC_NUMBER:
            raise TensorFileError(
                f"{path} is a pickle but not a PyTorch file (no PyTorch magic number)."
            )
        protocol = _unpickle(file, path)
        if protocol != LEGACY_PROTOCOL_VERSION:
            raise TensorFileError(
                f"{path}: unsupported legacy PyTorch protocol. "
                f"Expected {LEGACY_PROTOCOL_VERSION}. Received: {protocol!r}"
            )
        _unpickle(file, path)  # System info: byte order and C type sizes.
        result = _unpickle(file, path, persistent_load)
        keys = _unpickle(file, path)
        if not isinstance(keys, list):
            raise TensorFileError(f"{path}: malformed storage key list. Received: {keys!r}")
        file_size = os.fstat(file.fileno()).st_size
        for key in keys:
            key = key.decode("ascii", "replace") if isinstance(key, bytes) else key
            if key not in roots:
                raise TensorFileError(f"{path}: data for an unknown storage {key!r}.")
            size_bytes = file.read(LEGACY_SIZE_BYTES)
            if len(size_bytes) < LEGACY_SIZE_BYTES:
                raise TensorFileError(f"{path} is truncated: storage {key!r} is missing.")
            (count,) = struct.unpack("<q", size_bytes)
            dtype, declared = roots[key]
            nbytes = count * np.dtype(STORED_DTYPES[dtype]).itemsize
            if count < declared or file.tell() + nbytes > file_size:
                raise TensorFileError(
                    f"{path} is truncated: storage {key!r} needs {declared} elements. "
                    f"Received: {count} elements, {file_size - file.tell()} bytes left"
                )
            locations[key] = (file.tell(), count)
            file.seek(nbytes, os.SEEK_CUR)
    missing = sorted(set(roots) - set(locations))
    if missing:
        raise TensorFileError(f"{path} is truncated: storages {missing} have no data.")
    return result
