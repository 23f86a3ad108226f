"""The PyTorch-file reader: reads tensors, and never runs what a pickle names."""

import copyreg
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from studio.embeddings import EmbeddingFormatError, UnsafePickleError
from studio.tensor_files.torch_pickle_reader import LEGACY_MAGIC_NUMBER
from studio.tensor_files.torch_pickle_reader import LEGACY_PROTOCOL_VERSION
from studio.tensor_files.torch_pickle_reader import load_torch_pickle
from studio.tensor_files.torch_pickle_writer import encode_torch_file

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def _torch_like_zip(path, pickle_bytes, storages=None):
    """A zip laid out as torch.save lays one out, around any pickle."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/byteorder", "little")
        for key, data in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return path


def _legacy_file(path, main_pickle, storage_keys=(), storage_data=b""):
    """A pre-1.6 torch file: magic, protocol, system info, object, keys, data."""
    with open(path, "wb") as file:
        for header in (
            LEGACY_MAGIC_NUMBER,
            LEGACY_PROTOCOL_VERSION,
            {"protocol_version": LEGACY_PROTOCOL_VERSION, "little_endian": True},
        ):
            pickle.dump(header, file, protocol=2)
        file.write(main_pickle)
        pickle.dump(list(storage_keys), file, protocol=2)
        file.write(storage_data)
    return path


def _call_global(module, name, argument):
    """Protocol-2 opcodes for `module.name(argument)`, written by hand."""
    text = argument.encode()
    return (
        b"\x80\x02c" + f"{module}\n{name}\n".encode()
        + b"X" + struct.pack("<I", len(text)) + text
        + b"\x85R."  # TUPLE1, REDUCE, STOP
    )


class _RunsShell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _RunsPython:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def _create_file_code(marker):
    return f"open({str(marker)!r}, 'w').close()"


# --- Reading what torch writes ---------------------------------------------------


def test_reads_tensors_of_a_file_it_wrote(tmp_path):
    values = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    path = tmp_path / "x.pt"
    path.write_bytes(encode_torch_file({"a": values, "n": 5, "s": "text", "h": values.astype(np.float16)}))
    obj = load_torch_pickle(path)
    assert obj["n"] == 5 and obj["s"] == "text"
    assert obj["a"].shape == (3, 4) and obj["a"].dtype == "float32"
    np.testing.assert_array_equal(obj["a"].numpy(), values)
    assert obj["h"].numpy().dtype == np.float16


def test_reads_strided_views_of_a_shared_storage(tmp_path):
    # torch.save of `t` and `t[1]` writes one storage and an offset view.
    storage = np.arange(6, dtype="<f4")
    persistent = b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ"

    def tensor(offset, size, stride):
        ints = lambda values: b"(" + b"".join(b"K" + bytes([v]) for v in values) + b"t"  # noqa: E731
        return (
            b"ctorch._utils\n_rebuild_tensor_v2\n(" + persistent + b"K" + bytes([offset])
            + ints(size) + ints(stride) + b"\x89ccollections\nOrderedDict\n)RtR"
        )

    body = (
        b"\x80\x02}(X\x01\x00\x00\x00a" + tensor(0, (2, 3), (3, 1))
        + b"X\x01\x00\x00\x00b" + tensor(3, (3,), (1,))
        + b"X\x01\x00\x00\x00c" + tensor(0, (3, 2), (1, 3))  # A transpose.
        + b"u."
    )
    path = _torch_like_zip(tmp_path / "views.pt", body, {"0": storage.tobytes()})
    obj = load_torch_pickle(path)
    np.testing.assert_array_equal(obj["a"].numpy(), storage.reshape(2, 3))
    np.testing.assert_array_equal(obj["b"].numpy(), storage[3:])
    np.testing.assert_array_equal(obj["c"].numpy(), storage.reshape(2, 3).T)


def test_reads_big_endian_storages(tmp_path):
    values = np.array([1.5, -2.25, 3.0], dtype=">f4")
    body = (
        b"\x80\x02}X\x01\x00\x00\x00actorch._utils\n_rebuild_tensor_v2\n("
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x03tQ"
        b"K\x00(K\x03t(K\x01t\x89ccollections\nOrderedDict\n)RtRs."
    )
    path = tmp_path / "big.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("big/data.pkl", body)
        archive.writestr("big/byteorder", "big")
        archive.writestr("big/data/0", values.tobytes())
    np.testing.assert_array_equal(load_torch_pickle(path)["a"].numpy(), [1.5, -2.25, 3.0])


def test_reads_the_legacy_layout_fixture():
    obj = load_torch_pickle(os.path.join(FIXTURES, "diffusers_legacy.bin"))
    assert list(obj) == ["<legacy>"]
    assert obj["<legacy>"].shape == (2, 8)


def test_reads_legacy_storage_views(tmp_path):
    # PyTorch < 1.0 pickled views of storages: elements 2..4 of a 6-element one.
    storage = np.arange(6, dtype="<f4") / 4
    view = (
        b"\x80\x02}X\x01\x00\x00\x00vctorch._utils\n_rebuild_tensor_v2\n("
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
        b"K\x06(X\x01\x00\x00\x001K\x02K\x03ttQ"
        b"K\x00(K\x03t(K\x01t\x89ccollections\nOrderedDict\n)RtRs."
    )
    path = _legacy_file(
        tmp_path / "view.pt", view, ["0"], struct.pack("<q", 6) + storage.tobytes()
    )
    np.testing.assert_array_equal(load_torch_pickle(path)["v"].numpy(), storage[2:5])


def test_reads_a_pickled_parameter_dict_without_torch_nn():
    obj = load_torch_pickle(os.path.join(FIXTURES, "a1111_parameterdict.pt"))
    assert list(obj["string_to_param"]) == ["*"]
    assert obj["string_to_param"]["*"].shape == (1, 8)
    assert int(obj["string_to_token"]["*"].numpy()) == 265


# --- Refusing code ---------------------------------------------------------------


def test_refuses_os_system_and_runs_nothing(tmp_path):
    marker = tmp_path / "marker"
    payload = pickle.dumps(_RunsShell(f"touch {marker}"), protocol=2)
    path = _torch_like_zip(tmp_path / "evil.pt", payload)
    with pytest.raises(UnsafePickleError, match=rf"{os.system.__module__}\.system"):
        load_torch_pickle(path)
    assert not marker.exists()


def test_refused_payload_would_run_if_unpickled_normally(tmp_path):
    # Proves the payload is live: plain pickle runs it, our reader does not.
    marker = tmp_path / "marker"
    payload = pickle.dumps(_RunsPython(_create_file_code(marker)), protocol=2)
    path = _torch_like_zip(tmp_path / "evil.pt", payload)
    # Protocol 2 spells builtins as Python 2's `__builtin__`.
    with pytest.raises(UnsafePickleError, match=r"__builtin__\.exec"):
        load_torch_pickle(path)
    assert not marker.exists()
    pickle.loads(payload)
    assert marker.exists()


@pytest.mark.parametrize(
    "module, name",
    [
        ("os", "system"),
        ("posix", "system"),
        ("builtins", "eval"),
        ("__builtin__", "eval"),
        ("builtins", "getattr"),
        ("subprocess", "Popen"),
        ("torch", "load"),
        ("torch._utils", "_rebuild_device_tensor_from_numpy"),
        ("collections", "namedtuple"),
    ],
)
def test_refuses_any_global_outside_the_allow_list(tmp_path, module, name):
    marker = tmp_path / "marker"
    path = _torch_like_zip(tmp_path / "evil.pt", _call_global(module, name, f"touch {marker}"))
    with pytest.raises(UnsafePickleError, match=rf"Received: global {module}\.{name}"):
        load_torch_pickle(path)
    assert not marker.exists()


def test_refuses_code_hidden_inside_an_a1111_dict(tmp_path):
    marker = tmp_path / "marker"
    payload = pickle.dumps(
        {"string_to_token": {"*": 265}, "name": "cat", "step": _RunsPython(_create_file_code(marker))},
        protocol=2,
    )
    with pytest.raises(UnsafePickleError, match="exec"):
        load_torch_pickle(_torch_like_zip(tmp_path / "evil.pt", payload))
    assert not marker.exists()


def test_refuses_protocol_4_stack_global(tmp_path):
    marker = tmp_path / "marker"
    payload = pickle.dumps(_RunsPython(_create_file_code(marker)), protocol=4)
    assert b"\x93" in payload  # STACK_GLOBAL
    with pytest.raises(UnsafePickleError, match="exec"):
        load_torch_pickle(_torch_like_zip(tmp_path / "evil.pt", payload))
    assert not marker.exists()


def test_refuses_globals_reached_through_the_extension_registry(tmp_path):
    code = 0xF3
    copyreg.add_extension("builtins", "exec", code)
    try:
        marker = tmp_path / "marker"
        text = _create_file_code(marker).encode()
        payload = b"\x80\x02\x82" + bytes([code]) + b"X" + struct.pack("<I", len(text)) + text + b"\x85R."
        with pytest.raises(UnsafePickleError, match=r"builtins\.exec"):
            load_torch_pickle(_torch_like_zip(tmp_path / "evil.pt", payload))
        assert not marker.exists()
    finally:
        copyreg.remove_extension("builtins", "exec", code)


def test_refuses_code_in_the_legacy_layout(tmp_path):
    marker = tmp_path / "marker"
    payload = pickle.dumps(_RunsShell(f"touch {marker}"), protocol=2)
    with pytest.raises(UnsafePickleError, match="system"):
        load_torch_pickle(_legacy_file(tmp_path / "evil.pt", payload))
    assert not marker.exists()


def test_refuses_changing_an_allowed_callable(tmp_path):
    # BUILD on an allow-listed global would alter it for later loads.
    body = b"\x80\x02ccollections\nOrderedDict\n}X\x0c\x00\x00\x00__defaults__Nsb."
    with pytest.raises(UnsafePickleError, match="BUILD"):
        load_torch_pickle(_torch_like_zip(tmp_path / "evil.pt", body))
    body = b"\x80\x02ccollections\nOrderedDict\n)R."  # OrderedDict() still works.
    assert load_torch_pickle(_torch_like_zip(tmp_path / "ok.pt", body)) == {}


def test_refuses_rebuilders_called_with_something_else_than_a_storage(tmp_path):
    body = _call_global("torch._utils", "_rebuild_tensor_v2", "not a storage")
    with pytest.raises(EmbeddingFormatError, match="malformed"):
        load_torch_pickle(_torch_like_zip(tmp_path / "bad.pt", body))


@pytest.mark.parametrize("key", ["../../etc/passwd", "0/../../x"])
def test_refuses_storage_keys_that_are_paths(tmp_path, key):
    text = key.encode()
    body = (
        b"\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX"
        + struct.pack("<I", len(text)) + text + b"X\x03\x00\x00\x00cpuK\x01tQ."
    )
    with pytest.raises(EmbeddingFormatError, match="malformed storage record"):
        load_torch_pickle(_torch_like_zip(tmp_path / "bad.pt", body))


def test_refuses_a_tensor_bigger_than_its_storage(tmp_path):
    data = encode_torch_file({"a": np.zeros((2, 3), np.float32)})
    # Claim a bigger shape than the storage holds: (2, 3) -> (2, 9).
    path = tmp_path / "bad.pt"
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename.endswith("data.pkl"):
                content = content.replace(b"(K\x02K\x03t(K\x03K\x01t", b"(K\x02K\tt(K\tK\x01t")
            target.writestr(info.filename, content)
    with pytest.raises(EmbeddingFormatError, match="more elements than its storage"):
        load_torch_pickle(path)


def test_refuses_a_tensor_reading_past_its_storage_through_an_offset(tmp_path):
    body = (
        b"\x80\x02}X\x01\x00\x00\x00actorch._utils\n_rebuild_tensor_v2\n("
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ"
        b"K\x04(K\x03t(K\x01t\x89ccollections\nOrderedDict\n)RtRs."
    )  # Elements 4..6 of a 6-element storage.
    path = _torch_like_zip(tmp_path / "bad.pt", body, {"0": bytes(24)})
    with pytest.raises(EmbeddingFormatError, match="past the end of its storage"):
        load_torch_pickle(path)


# --- Damaged files ---------------------------------------------------------------


def test_truncated_zip_file_is_a_clear_error(tmp_path):
    data = encode_torch_file({"a": np.ones((4, 8), np.float32)})
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EmbeddingFormatError, match="truncated or damaged"):
        load_torch_pickle(path)


def test_truncated_legacy_file_is_a_clear_error(tmp_path):
    data = open(os.path.join(FIXTURES, "diffusers_legacy.bin"), "rb").read()
    path = tmp_path / "cut.bin"
    path.write_bytes(data[:-10])
    with pytest.raises(EmbeddingFormatError, match="truncated"):
        load_torch_pickle(path)


def test_zip_without_its_storage_is_a_clear_error(tmp_path):
    data = encode_torch_file({"a": np.ones((4, 8), np.float32)})
    path = tmp_path / "partial.pt"
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            if "/data/" not in info.filename:
                target.writestr(info.filename, source.read(info))
    with pytest.raises(EmbeddingFormatError, match="missing the storage"):
        load_torch_pickle(path)


def test_other_files_are_a_clear_error(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(EmbeddingFormatError, match="not a PyTorch file"):
        load_torch_pickle(path)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(EmbeddingFormatError, match="not a PyTorch file"):
        load_torch_pickle(plain)
