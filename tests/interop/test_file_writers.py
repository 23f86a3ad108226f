"""The streaming safetensors writer, atomic outputs and tokenizer folders."""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file

from studio.files.atomic_write import atomic_folder
from studio.interop.checkpoint_format_error import CheckpointFormatError
from studio.interop.hf_tokenizer_files import read_hf_tokenizer, write_hf_tokenizer
from studio.tensor_files.safetensors_writer import write_safetensors


def _entries(arrays):
    return [(name, array.shape, lambda array=array: array) for name, array in arrays.items()]


def test_safetensors_files_read_back(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "a.weight": rng.standard_normal((3, 5, 2)).astype("float32"),
        "b": rng.standard_normal((7,)).astype("float32"),
        "empty": np.zeros((0, 4), "float32"),
    }
    path = write_safetensors(tmp_path / "x.safetensors", _entries(arrays), metadata={"k": "v"})
    loaded = load_file(path)
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array)
    with open(path, "rb") as file:
        header_length = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(header_length))
    assert header_length % 8 == 0 and header["__metadata__"] == {"k": "v"}

    write_safetensors(tmp_path / "h.safetensors", _entries(arrays), dtype="float16")
    assert load_file(tmp_path / "h.safetensors")["b"].dtype == np.float16


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"old")
    wrong = [("a", (2, 2), lambda: np.zeros((3,), "float32"))]
    with pytest.raises(ValueError, match="announced with shape"):
        write_safetensors(path, wrong)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.safetensors"]


def test_atomic_folder_keeps_the_old_one_on_failure(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_folder(target, overwrite=True) as staging:
            open(os.path.join(staging, "new.txt"), "w").close()
            raise RuntimeError("interrupted")
    assert os.listdir(target) == ["old.txt"] and os.listdir(tmp_path) == ["model"]
    with atomic_folder(target, overwrite=True) as staging:
        open(os.path.join(staging, "new.txt"), "w").close()
    assert os.listdir(target) == ["new.txt"] and os.listdir(tmp_path) == ["model"]


def test_tokenizer_folder_round_trip_with_placeholders(tmp_path):
    from studio.tokenizers import CLIPTokenizer

    tokenizer = CLIPTokenizer.byte_level(sequence_length=20, pad_token="!")
    tokenizer.add_placeholder_tokens("<cat-toy>", 2)
    write_hf_tokenizer(tokenizer, tmp_path)
    loaded = read_hf_tokenizer(tmp_path)
    prompt = ["a <cat-toy> on a mat"]
    assert loaded(prompt).tolist() == tokenizer(prompt).tolist()
    assert (loaded.sequence_length, loaded.pad_token) == (20, "!")
    assert loaded.vocabulary_size == tokenizer.vocabulary_size


def test_tokenizer_json_only_and_gaps(tmp_path):
    from studio.tokenizers import CLIPTokenizer

    tokenizer = CLIPTokenizer.byte_level()
    merges = ["a b", "ab c"]
    vocabulary = dict(
        tokenizer.vocabulary, ab=len(tokenizer.vocabulary), abc=len(tokenizer.vocabulary) + 1
    )
    (tmp_path / "tokenizer.json").write_text(
        json.dumps({"model": {"type": "BPE", "vocab": vocabulary, "merges": [["a", "b"], "ab c"]}})
    )
    loaded = read_hf_tokenizer(tmp_path)
    assert loaded.merges == merges and loaded.vocabulary_size == len(vocabulary)

    (tmp_path / "added_tokens.json").write_text(json.dumps({"<x>": len(vocabulary) + 3}))
    with pytest.raises(CheckpointFormatError, match="without gaps"):
        read_hf_tokenizer(tmp_path)


def test_real_clip_vocabulary_matches_transformers(tmp_path, clip_vocabulary_file):
    """With CLIP's real vocabulary, our tokenizer folder gives transformers' ids."""
    transformers = pytest.importorskip("transformers")
    from studio.tokenizers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_vocabulary_file(clip_vocabulary_file)
    write_hf_tokenizer(tokenizer, tmp_path)
    theirs = transformers.CLIPTokenizer.from_pretrained(str(tmp_path))
    prompt = "A photo of an astronaut riding a horse on Mars, trending on artstation!"
    assert theirs(prompt, padding="max_length").input_ids == tokenizer([prompt])[0].tolist()
    assert read_hf_tokenizer(tmp_path)([prompt]).tolist() == tokenizer([prompt]).tolist()
