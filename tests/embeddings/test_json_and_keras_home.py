"""JSON files and `$KERAS_HOME`, each written in one place."""

import os

import pytest

from studio.files import atomic_write
from studio.files.atomic_write import atomic_path
from studio.files.json_file import read_json, read_json_object, read_json_or_none, write_json
from studio.files.keras_home import keras_home


def test_json_round_trip_and_layout(tmp_path):
    path = write_json(tmp_path / "a.json", {"b": 1, "a": "é", "x": float("nan")}, sort_keys=True)
    text = open(path, encoding="utf-8").read()
    assert text.startswith('{\n  "a": "\\u00e9"') and text.endswith("}\n")
    value = read_json(path)
    # Issue 23 item 10: NaN is not JSON; it is written as null.
    assert value["a"] == "é" and value["x"] is None
    write_json(path, {"a": "é"}, ensure_ascii=False, indent=None)
    assert open(path, encoding="utf-8").read() == '{"a": "é"}\n'
    assert os.listdir(tmp_path) == ["a.json"]


def test_non_finite_numbers_are_written_as_null_so_every_file_is_strict_json(tmp_path):
    import json

    import numpy as np

    value = {
        "loss": float("nan"),
        "nested": [float("inf"), -float("inf"), np.float32("nan"), np.float32(1.5), 2, True],
        "inner": {"x": np.float64("-inf")},
    }
    path = write_json(tmp_path / "s.json", value)
    text = open(path, encoding="utf-8").read()
    assert "NaN" not in text and "Infinity" not in text

    def reject(constant):
        raise ValueError(constant)

    strict = json.loads(text, parse_constant=reject)  # As JSON.parse reads it.
    assert strict == {"loss": None, "nested": [None, None, None, 1.5, 2, True],
                      "inner": {"x": None}}


def test_tolerant_and_strict_readers(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    assert read_json_or_none(bad) is None and read_json_or_none(tmp_path / "none") is None
    with pytest.raises(KeyError, match="is not valid JSON"):
        read_json_object(bad, KeyError)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object. Received: list"):
        read_json_object(bad)


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "w.weights.h5"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(path, suffix=".weights.h5") as temporary:
            assert temporary.endswith(".weights.h5") and os.path.basename(temporary)[0] == "."
            open(temporary, "wb").write(b"new")
            raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["w.weights.h5"]
    with atomic_path(path, suffix=".weights.h5") as temporary:
        open(temporary, "wb").write(b"new")
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["w.weights.h5"]
    assert atomic_write.TEMPORARY_SUFFIX == ".partial"


def test_keras_home(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert keras_home("models", "x") == os.path.join(str(tmp_path), "models", "x")
    monkeypatch.delenv("KERAS_HOME")
    assert keras_home() == os.path.join(os.path.expanduser("~"), ".keras")
