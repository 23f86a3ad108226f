"""Hostile files (issue #23, items 16-19): bombs and odd names are refused or kept safely.

16: a PyTorch file whose zip member inflates far beyond what its storage
    declares, or whose storages declare more than an embedding holds.
17: a decompression-bomb image in an upload batch.
18: non-Latin upload names.
19: upload errors name the user's file, never the server's folder.
"""

import io
import os
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from studio.app.safe_uploads import (IMAGE_EXTENSIONS, UploadRejected, safe_file_name,
                                     save_embedding_upload, save_image_upload,
                                     save_image_uploads)
from studio.embeddings import EmbeddingFormatError, load_embedding
from studio.embeddings.embedding_files import MAX_EMBEDDING_DATA_BYTES
from studio.tensor_files.safetensors_reader import read_safetensors
from studio.tensor_files.tensor_file_error import TensorFileError
from studio.tensor_files.torch_pickle_reader import load_torch_pickle
from studio.tensor_files.torch_pickle_writer import encode_torch_file

MEBIBYTE = 2**20
WIDTH = 768
STORAGE_MEMBER = "archive/data/0"
# What the bomb's storage member inflates to: far more than the 3 KB its
# storage declares, little enough to build in a second.
BOMB_INFLATED_BYTES = 256 * MEBIBYTE
# Reading a refused bomb may allocate the zip directory and the pickle, not
# the inflated member.
MAX_PEAK_BYTES = 8 * MEBIBYTE


def _embedding_pt():
    return encode_torch_file({"emb_params": np.zeros((1, WIDTH), np.float32)})


def _rezip(data, replace):
    """`data` (a torch zip) with members rewritten by `replace(name, bytes, out_archive)`."""
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for info in source.infolist():
            if not replace(info.filename, source.read(info), archive):
                archive.writestr(info, source.read(info))
    return buffer.getvalue()


def _bomb_pt(inflated_bytes=BOMB_INFLATED_BYTES):
    """An embedding `.pt` whose storage member is `inflated_bytes` of deflated zeros."""
    zeros = bytes(MEBIBYTE)

    def replace(name, _, archive):
        if name != STORAGE_MEMBER:
            return False
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as member:
            for _ in range(inflated_bytes // MEBIBYTE):
                member.write(zeros)
        return True

    return _rezip(_embedding_pt(), replace)


def _declaring_pt(numel):
    """An embedding `.pt` whose pickle declares a storage of `numel` float32
    elements (with only 3 KB of data): honest-looking, but huge."""

    def replace(name, data, archive):
        if not name.endswith("data.pkl"):
            return False
        declared = b"cpu" + b"J" + struct.pack("<i", numel) + b"tQ"
        patched = data.replace(b"cpuM\x00\x03tQ", declared, 1)
        assert patched != data
        archive.writestr(name, patched)
        return True

    return _rezip(_embedding_pt(), replace)


@pytest.fixture(scope="module")
def bomb_pt():
    return _bomb_pt()


def _peak_bytes(function, *args):
    tracemalloc.start()
    try:
        function(*args)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# --- 16: PyTorch bombs -------------------------------------------------------


def test_bomb_is_small_on_disk_and_big_inflated(bomb_pt):
    assert len(bomb_pt) < 2 * MEBIBYTE
    info = zipfile.ZipFile(io.BytesIO(bomb_pt)).getinfo(STORAGE_MEMBER)
    assert info.file_size == BOMB_INFLATED_BYTES


def test_member_inflating_beyond_its_storage_is_refused_unread(tmp_path, bomb_pt):
    path = tmp_path / "bomb.pt"
    path.write_bytes(bomb_pt)

    def load():
        with pytest.raises(EmbeddingFormatError, match="inflates to 268435456 bytes"):
            load_embedding(path)

    assert _peak_bytes(load) < MAX_PEAK_BYTES
    # Any reader, limit or not: the tensor reader refuses too.
    with pytest.raises(TensorFileError, match=r"declares 768 float32 elements \(3072 bytes\)"):
        load_torch_pickle(path)


def test_embedding_upload_of_a_bomb_is_rejected_and_not_kept(tmp_path, bomb_pt):
    folder = tmp_path / "embeddings"

    def upload():
        with pytest.raises(UploadRejected, match="'bomb.pt' is not an embedding file"):
            save_embedding_upload(str(folder), "bomb.pt", bomb_pt)

    assert _peak_bytes(upload) < MAX_PEAK_BYTES
    assert os.listdir(folder) == []


def test_declared_data_beyond_the_embedding_limit_is_refused_before_reading(tmp_path):
    # 1 GiB of float32 declared at the real default limit: refused from the
    # pickle alone, so nothing is allocated for it.
    numel = 2**28
    assert numel * 4 > MAX_EMBEDDING_DATA_BYTES
    path = tmp_path / "huge.pt"
    path.write_bytes(_declaring_pt(numel))

    def load():
        with pytest.raises(EmbeddingFormatError, match="more tensor data than a file of this kind"):
            load_embedding(path)

    assert _peak_bytes(load) < MAX_PEAK_BYTES


def test_low_limit_argument_refuses_and_none_reads(tmp_path):
    path = tmp_path / "small.pt"
    path.write_bytes(_embedding_pt())
    with pytest.raises(TensorFileError, match="over 1024 bytes"):
        load_torch_pickle(path, max_data_bytes=1024)
    tensor = load_torch_pickle(path, max_data_bytes=None)["emb_params"]
    assert tensor.numpy().shape == (1, WIDTH)


def test_safetensors_header_longer_than_the_file_is_refused(tmp_path):
    path = tmp_path / "lying.safetensors"
    path.write_bytes(struct.pack("<Q", 10 * 2**30) + b'{"a": 1}')
    with pytest.raises(TensorFileError, match="header claims 10737418240 bytes"):
        read_safetensors(path)


# --- 17: image bombs -----------------------------------------------------------


def _png_chunk(kind, payload):
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def _bomb_png(side=60_000):
    """A tiny PNG whose header declares `side` x `side` RGB pixels."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


def _good_png():
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_decompression_bomb_image_is_an_upload_rejection(tmp_path):
    with pytest.raises(UploadRejected, match=r"'bomb\.png' declares too many pixels"):
        save_image_upload(str(tmp_path), "bomb.png", _bomb_png())
    assert os.listdir(tmp_path) == []


def test_a_bomb_in_a_batch_keeps_the_good_images(tmp_path):
    folder = tmp_path / "circles"
    results = save_image_uploads(
        str(folder), [("good1.png", _good_png()), ("bomb.png", _bomb_png()),
                      ("good2.png", _good_png())])
    assert [path is not None for path, _ in results] == [True, False, True]
    assert [error is None for _, error in results] == [True, False, True]
    assert "bomb.png" in results[1][1]
    assert sorted(os.listdir(folder)) == ["good1.png", "good2.png"]


# --- 18: non-Latin names ---------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("日本語.png", "日本語.png"),
    ("котик.jpg", "котик.jpg"),
    ("한국어 사진.webp", "한국어-사진.webp"),
    ("chat-été.webp", "chat-ete.webp"),
    ("../../日本/語.png", "語.png"),
    ("日本\x00\x1b[31m.png", "日本-31m.png"),
    ("..／..／evil.png", "evil.png"),
    ("\u202egnp.exe.png", "gnp.exe.png"),
])
def test_non_latin_names_are_kept_and_still_safe(name, expected):
    assert safe_file_name(name, IMAGE_EXTENSIONS) == expected


def test_non_latin_upload_is_saved_under_its_name(tmp_path):
    path = save_image_upload(str(tmp_path), "日本語.png", _good_png())
    assert path == str(tmp_path / "日本語.png")


def test_long_non_latin_names_fit_a_file_system_name():
    for character in ("語", "\U00020000"):  # 3 and 4 bytes in UTF-8
        name = safe_file_name(character * 200 + ".png", IMAGE_EXTENSIONS)
        assert name.endswith(".png") and len(name.encode("utf-8")) <= 255


# --- 19: no server paths in messages -----------------------------------------------


def test_rejections_name_only_the_users_file(tmp_path, bomb_pt):
    folder = tmp_path / "server" / "secret-folder"
    messages = []
    for save, name, data in [
        (save_embedding_upload, "bomb.pt", bomb_pt),
        (save_embedding_upload, "text.safetensors", b"\x08" + b"\0" * 64),
        (save_embedding_upload, "not-a-pickle.pt", b"\x80\x02" + b"junk"),
        (save_image_upload, "bomb.png", _bomb_png()),
        (save_image_upload, "fake.png", b"not an image"),
    ]:
        with pytest.raises(UploadRejected) as raised:
            save(str(folder), name, data)
        messages.append(str(raised.value))
    for message in messages:
        assert str(tmp_path) not in message and "secret-folder" not in message, message
    assert "'bomb.pt'" in messages[0]
