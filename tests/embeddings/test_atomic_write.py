"""Files are replaced whole or not at all."""

import os
import stat

import pytest

from studio.files import atomic_write
from studio.files.atomic_write import write_file_atomically


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "file.bin"
    write_file_atomically(path, b"first")
    write_file_atomically(path, b"second")
    assert path.read_bytes() == b"second"
    assert os.listdir(path.parent) == ["file.bin"]


def test_new_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        path = write_file_atomically(tmp_path / "file.bin", b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_crash_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, failing):
    path = tmp_path / "file.bin"
    path.write_bytes(b"old")

    def crash(*args):
        raise OSError("simulated crash")

    monkeypatch.setattr(atomic_write.os, failing, crash)
    with pytest.raises(OSError, match="simulated crash"):
        write_file_atomically(path, b"new" * 1000)
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file.bin"]
