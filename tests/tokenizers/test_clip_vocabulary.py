import gzip
import hashlib
import os

import keras
import pytest

from studio.errors import StudioError
from studio.tokenizers import CLIPTokenizer
from studio.tokenizers import VocabularyMismatchError
from studio.tokenizers import VocabularyNotFoundError
from studio.tokenizers import get_clip_vocabulary_path
from studio.tokenizers import load_clip_vocabulary

# As published in keras_cv/src/models/stable_diffusion/clip_tokenizer.py.
KERAS_CV_ORIGIN = (
    "https://github.com/openai/CLIP/blob/main/clip/bpe_simple_vocab_16e6.txt.gz?raw=true"
)
KERAS_CV_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"


def _sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _plain_copy(clip_vocabulary_file, folder):
    path = folder / "bpe_simple_vocab_16e6.txt"
    path.write_bytes(gzip.decompress(clip_vocabulary_file.read_bytes()))
    return path


def test_file_from_wheel_has_keras_cv_hash_and_is_accepted(clip_vocabulary_file):
    assert _sha256(clip_vocabulary_file) == KERAS_CV_SHA256
    assert get_clip_vocabulary_path(clip_vocabulary_file) == str(clip_vocabulary_file)


def test_folder_holding_the_file_is_accepted(clip_vocabulary_file):
    found = get_clip_vocabulary_path(clip_vocabulary_file.parent)
    assert os.path.samefile(found, clip_vocabulary_file)


def test_plain_text_copy_is_accepted_and_reads_the_same(clip_vocabulary_file, tmp_path):
    plain = _plain_copy(clip_vocabulary_file, tmp_path)
    assert get_clip_vocabulary_path(plain) == str(plain)
    # A folder holding only the decompressed file is accepted too.
    assert get_clip_vocabulary_path(tmp_path) == str(plain)
    assert load_clip_vocabulary(plain) == load_clip_vocabulary(clip_vocabulary_file)


def test_recompressed_copy_is_accepted(clip_vocabulary_file, tmp_path):
    path = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    text = gzip.decompress(clip_vocabulary_file.read_bytes())
    path.write_bytes(gzip.compress(text, mtime=0))
    assert _sha256(path) != KERAS_CV_SHA256
    assert get_clip_vocabulary_path(path) == str(path)


def test_modified_file_is_rejected_naming_both_hashes(clip_vocabulary_file, tmp_path):
    path = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    text = gzip.decompress(clip_vocabulary_file.read_bytes())
    path.write_bytes(gzip.compress(text.replace(b"\ni n\n", b"\nn i\n", 1)))
    with pytest.raises(VocabularyMismatchError) as info:
        get_clip_vocabulary_path(path)
    message = str(info.value)
    assert str(path) in message
    assert _sha256(path) in message
    assert KERAS_CV_SHA256 in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, StudioError)


def test_corrupt_gzip_is_rejected(tmp_path):
    path = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(VocabularyMismatchError, match="bpe_simple_vocab_16e6"):
        get_clip_vocabulary_path(path)


def test_missing_file_and_empty_folder_raise_not_found(tmp_path):
    with pytest.raises(VocabularyNotFoundError, match="does not exist") as info:
        get_clip_vocabulary_path(tmp_path / "nowhere.txt.gz")
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(VocabularyNotFoundError, match="bpe_simple_vocab_16e6.txt.gz"):
        get_clip_vocabulary_path(tmp_path)


def test_download_goes_through_keras_cache_with_published_hash(monkeypatch, tmp_path):
    calls = []

    def fake_get_file(**kwargs):
        calls.append(kwargs)
        return str(tmp_path / kwargs["fname"])

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    path = get_clip_vocabulary_path()
    assert path == str(tmp_path / "bpe_simple_vocab_16e6.txt.gz")
    assert len(calls) == 1
    assert calls[0]["origin"] == KERAS_CV_ORIGIN
    assert calls[0]["file_hash"] == KERAS_CV_SHA256


def test_offline_error_says_how_to_provide_the_file(monkeypatch, tmp_path):
    def offline_get_file(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline_get_file)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(VocabularyNotFoundError) as info:
        get_clip_vocabulary_path()
    message = str(info.value)
    assert "bpe_simple_vocab_16e6.txt.gz" in message
    assert KERAS_CV_ORIGIN in message
    assert "Temporary failure in name resolution" in message
    assert "from_vocabulary_file(path)" in message
    assert str(tmp_path / "datasets" / "bpe_simple_vocab_16e6.txt.gz") in message
    with pytest.raises(VocabularyNotFoundError, match="pass its path"):
        CLIPTokenizer.from_vocabulary_file()


def test_loaded_vocabulary_has_clip_layout(clip_vocabulary):
    vocabulary, merges = clip_vocabulary
    assert len(vocabulary) == 49408
    assert sorted(vocabulary.values()) == list(range(49408))
    assert vocabulary["<|startoftext|>"] == 49406
    assert vocabulary["<|endoftext|>"] == 49407
    assert vocabulary["!"] == 0 and vocabulary["!</w>"] == 256
    assert merges[0] == "i n" and vocabulary["in"] == 512
    assert len(merges) == 48894


def test_file_with_too_few_merges_is_rejected(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("#version: 0.2\ni n\nt h\n")
    with pytest.raises(ValueError, match="48894 merge rules"):
        load_clip_vocabulary(path)
