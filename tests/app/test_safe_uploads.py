"""Uploaded names never become paths outside the folder; sizes and types are checked."""

import os

import pytest

from studio.app.safe_uploads import (IMAGE_EXTENSIONS, MAX_IMAGE_BYTES, UploadRejected,
                                     safe_file_name, save_embedding_upload, save_image_upload)

from .conftest import png_bytes


@pytest.mark.parametrize("name, expected", [
    ("../../evil.png", "evil.png"),
    ("..\\..\\windows\\evil.PNG", "evil.png"),
    ("/etc/passwd.png", "passwd.png"),
    (".hidden.png", "hidden.png"),
    ("-_.png", "upload.png"),
    ("my cat (1).jpg", "my-cat-1.jpg"),
    ("chat-été.webp", "chat-ete.webp"),
])
def test_safe_file_name(name, expected):
    assert safe_file_name(name, IMAGE_EXTENSIONS) == expected


def test_traversal_name_lands_inside_folder_and_never_overwrites(tmp_path):
    folder = tmp_path / "uploads"
    first = save_image_upload(str(folder), "../../evil.png", png_bytes(0))
    second = save_image_upload(str(folder), "../evil.png", png_bytes(1))
    assert first == str(folder / "evil.png")
    assert second == str(folder / "evil-2.png")
    assert sorted(os.listdir(tmp_path)) == ["uploads"]


def test_oversized_upload_is_rejected_with_the_limit(tmp_path):
    with pytest.raises(UploadRejected, match=r"too large: 20\.0 MiB, the limit is 20 MiB"):
        save_image_upload(str(tmp_path), "big.png", b"\0" * (MAX_IMAGE_BYTES + 1))
    assert os.listdir(tmp_path) == []


def test_non_image_content_and_type_are_rejected(tmp_path):
    with pytest.raises(UploadRejected, match="not an image that can be read"):
        save_image_upload(str(tmp_path), "fake.png", b"this is text, not a PNG")
    with pytest.raises(UploadRejected, match="extension must be one of"):
        save_image_upload(str(tmp_path), "notes.txt", b"hello")
    assert os.listdir(tmp_path) == []


def test_embedding_upload_must_read_as_an_embedding(tmp_path):
    with pytest.raises(UploadRejected, match="not an embedding file"):
        save_embedding_upload(str(tmp_path), "model.safetensors", b"\x08" + b"\0" * 64)
    assert os.listdir(tmp_path) == []
