"""PyTorch zip files written without PyTorch load in PyTorch (when installed)."""

import io
import pickletools
import zipfile

import numpy as np
import pytest

from studio.tensor_files.torch_pickle_reader import load_torch_pickle
from studio.tensor_files.torch_pickle_writer import STORAGE_ALIGNMENT, encode_torch_file

OBJECT = {
    "string_to_token": {"*": 265},
    "name": "<cat-toy>",
    "step": 2**40,
    "negative": -70000,
    "ratio": 0.25,
    "flag": True,
    "nothing": None,
    "items": [1, (2, "three")],
}


def _arrays():
    rng = np.random.default_rng(1)
    return {
        "float32": rng.standard_normal((2, 5)).astype(np.float32),
        "float16": rng.standard_normal((3, 4)).astype(np.float16),
        "vector": rng.standard_normal(7).astype(np.float32),
    }


def test_layout_matches_torch_save():
    data = encode_torch_file({"a": np.zeros((2, 3), np.float32)}, archive_name="cat")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert names[0] == "cat/data.pkl"  # torch reads the archive name from the first entry.
        assert {"cat/byteorder", "cat/version", "cat/data/0", "cat/.format_version"} <= set(names)
        assert archive.read("cat/byteorder") == b"little"
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        for info in archive.infolist():
            start = info.header_offset + 30 + len(info.filename) + len(info.extra)
            assert start % STORAGE_ALIGNMENT == 0, info.filename
        opcodes = list(pickletools.genops(archive.read("cat/data.pkl")))
    assert opcodes[0][0].name == "PROTO" and opcodes[0][1] == 2
    globals_used = {arg for op, arg, _ in opcodes if op.name == "GLOBAL"}
    assert globals_used == {
        "torch._utils _rebuild_tensor_v2",
        "torch FloatStorage",
        "collections OrderedDict",
    }
    assert encode_torch_file({"a": np.zeros((2, 3), np.float32)}, "cat") == data  # Deterministic.


def test_reads_back_without_torch(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(encode_torch_file({**OBJECT, **_arrays()}))
    obj = load_torch_pickle(path)
    for key, value in OBJECT.items():
        assert obj[key] == (value if key != "items" else [1, (2, "three")])
    for key, array in _arrays().items():
        restored = obj[key].numpy()
        assert restored.dtype == array.dtype
        np.testing.assert_array_equal(restored, array)


def test_refuses_objects_it_cannot_write():
    with pytest.raises(ValueError, match="Received: set"):
        encode_torch_file({"a": {1, 2}})
    with pytest.raises(ValueError, match="Received: dtype=int8"):
        encode_torch_file({"a": np.zeros(3, np.int8)})
    with pytest.raises(ValueError, match="keys must be strings"):
        encode_torch_file({1: "a"})


def test_torch_loads_it_with_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "x.pt"
    path.write_bytes(encode_torch_file({**OBJECT, **_arrays()}, archive_name="x"))
    for mmap in (False, True):  # mmap needs the 64-byte alignment.
        loaded = torch.load(path, weights_only=True, mmap=mmap)
        for key, value in OBJECT.items():
            assert loaded[key] == value
        for key, array in _arrays().items():
            assert loaded[key].dtype == getattr(torch, str(array.dtype))
            np.testing.assert_array_equal(loaded[key].numpy(), array)
