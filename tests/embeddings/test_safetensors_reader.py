"""The safetensors reader: header first, data on demand, clear errors."""

import json
import struct

import numpy as np
import pytest
import safetensors.numpy

from studio.embeddings import EmbeddingFormatError
from studio.tensor_files.safetensors_reader import looks_like_safetensors, read_safetensors


def test_reads_what_safetensors_writes(tmp_path):
    arrays = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3) / 3,
        "b": np.arange(4, dtype=np.float16),
        "c": np.array([1, -2], np.int64),
    }
    path = tmp_path / "x.safetensors"
    path.write_bytes(safetensors.numpy.save(arrays, metadata={"k": "v"}))
    assert looks_like_safetensors(path)
    tensors, metadata = read_safetensors(path)
    assert metadata == {"k": "v"}
    for key, array in arrays.items():
        assert tensors[key].shape == array.shape
        restored = tensors[key].numpy()
        assert restored.dtype == array.dtype
        np.testing.assert_array_equal(restored, array)


def _handmade(path, header, data):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_reads_bfloat16_exactly_as_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 1e-3], np.float32)
    bits = (values.view(np.uint32) >> 16).astype("<u2")  # bfloat16 patterns: upper halves.
    expected = (bits.astype(np.uint32) << 16).view(np.float32)
    path = _handmade(
        tmp_path / "bf16.safetensors",
        {"v": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}},
        bits.tobytes(),
    )
    tensors, _ = read_safetensors(path)
    assert tensors["v"].dtype == "bfloat16"
    restored = tensors["v"].numpy()
    assert restored.dtype == np.float32
    np.testing.assert_array_equal(restored, expected)


def test_truncated_data_is_a_clear_error(tmp_path):
    path = tmp_path / "x.safetensors"
    data = safetensors.numpy.save({"a": np.ones((4, 8), np.float32)})
    path.write_bytes(data[:-5])
    assert looks_like_safetensors(path)  # So the error can say what is wrong.
    with pytest.raises(EmbeddingFormatError, match=r"truncated: tensor 'a' ends at byte"):
        read_safetensors(path)


def test_truncated_header_is_a_clear_error(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(safetensors.numpy.save({"a": np.ones(3, np.float32)})[:20])
    with pytest.raises(EmbeddingFormatError, match="truncated or not a safetensors file"):
        read_safetensors(path)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}, "unsupported"),
        ({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}, "needs 12 bytes"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, "invalid"),
        ({"dtype": "F32"}, "invalid"),
    ],
)
def test_invalid_entries_are_clear_errors(tmp_path, entry, message):
    path = _handmade(tmp_path / "x.safetensors", {"a": entry}, b"\x00" * 16)
    with pytest.raises(EmbeddingFormatError, match=message):
        read_safetensors(path)


def test_non_json_header_is_a_clear_error(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", 4) + b"{abc")
    with pytest.raises(EmbeddingFormatError, match="not JSON"):
        read_safetensors(path)
