"""`studio embeddings inspect` and `studio embeddings convert`."""

import argparse
import os

import numpy as np
import pytest

from studio.embeddings import TextualInversionEmbedding, load_embedding, save_embedding
from studio.cli import embeddings_command
from studio.tokenizers import CLIPTokenizer

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def _run(argv):
    """Parses and runs as `studio` does (studio/cli/main.py)."""
    parser = argparse.ArgumentParser(prog="studio")
    subparsers = parser.add_subparsers(dest="command")
    embeddings_command.add_parser(subparsers)
    args = parser.parse_args(["embeddings", *argv])
    return args.run(args)


def test_inspect_shows_format_tokens_dtype_norms_and_metadata(capsys):
    path = os.path.join(FIXTURES, "a1111_torch.pt")
    assert _run(["inspect", path]) == 0
    out = capsys.readouterr().out
    embedding = load_embedding(path)
    norms = embedding.vector_norms()["<fixture-a1111>"]
    assert "Format: a1111 (SD 1.x/2.x)" in out
    assert "Dtype: float32" in out
    assert f"<fixture-a1111>: shape [2, 8], norms [{norms[0]:.4f}, {norms[1]:.4f}]" in out
    assert "Steps: 500" in out
    assert "sd_checkpoint: 7460a6fa" in out


def test_inspect_shows_sdxl_files(capsys):
    assert _run(["inspect", os.path.join(FIXTURES, "sdxl.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "SD-XL" in out and "clip_l: shape [2, 8]" in out and "clip_g: shape [2, 12]" in out


def test_inspect_with_a_model_lists_nearest_words(tmp_path, capsys, monkeypatch):
    tokenizer = CLIPTokenizer.byte_level()
    table = np.random.default_rng(0).standard_normal((tokenizer.vocabulary_size, 8)).astype(np.float32)
    word = tokenizer.token_to_id("q</w>")
    embedding = TextualInversionEmbedding(
        {"<q>": table[[word]] * 2}, base_model="tiny", base_model_hash="a" * 64
    )
    path = save_embedding(embedding, tmp_path / "q.safetensors")
    loaded = {}

    def fake_vocabulary(args):
        loaded["model"] = args.model
        return table, tokenizer, "b" * 64

    monkeypatch.setattr(embeddings_command, "_load_model_vocabulary", fake_vocabulary)
    assert _run(["inspect", str(path), "--model", "tiny", "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert loaded["model"] == "tiny"
    assert "Warning: The embedding was trained on other text-encoder weights" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("<q>[0]:"))
    assert line.split(":", 1)[1].split(",")[0].split()[0] == "q</w>"
    assert line.count(",") == 1  # --top-k 2


def test_inspect_with_a_model_of_another_width_fails(tmp_path, monkeypatch):
    tokenizer = CLIPTokenizer.byte_level()
    table = np.zeros((tokenizer.vocabulary_size, 16), np.float32)
    monkeypatch.setattr(embeddings_command, "_load_model_vocabulary",
                        lambda args: (table, tokenizer, None))
    path = os.path.join(FIXTURES, "kohya_fp16.safetensors")
    with pytest.raises(ValueError, match="8 wide but the text encoder's are 16"):
        _run(["inspect", path, "--model", "tiny"])


def test_inspect_sdxl_with_a_model_fails_before_loading_it(monkeypatch):
    def must_not_load(args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(embeddings_command, "_load_model_vocabulary", must_not_load)
    with pytest.raises(ValueError, match="SD-XL"):
        _run(["inspect", os.path.join(FIXTURES, "sdxl.safetensors"), "--model", "tiny"])


def test_inspect_with_the_embedded_model_finds_the_word_a_vector_was_copied_from(
        tmp_path, capsys):
    """End to end: the embedded tiny-shapes model's own token table and tokenizer.

    The embedding's two vectors are rows of that table ("circle" and
    "red", scaled: the cosine ignores the scale), so the nearest word of
    each is the word whose row it is, at similarity 1.
    """
    import keras

    from studio.models import StableDiffusionBackbone

    backbone = StableDiffusionBackbone.from_preset("tiny-shapes")
    table = keras.ops.convert_to_numpy(backbone.text_encoder.token_embedding.embeddings)
    tokenizer = backbone.tokenizer
    rows = [tokenizer.tokenize_words(word) for word in ("circle", "red")]
    assert all(len(ids) == 1 for ids in rows)  # One token each in the world's vocabulary.
    rows = [ids[0] for ids in rows]
    words = [tokenizer.id_to_token(row) for row in rows]
    embedding = TextualInversionEmbedding({"<t>": table[rows] * 3.0})
    path = save_embedding(embedding, tmp_path / "t.safetensors")
    assert _run(["inspect", str(path), "--model", "tiny-shapes", "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "Warning" not in out  # The same width, and no recorded weights to disagree.
    for index, word in enumerate(words):
        line = next(line for line in out.splitlines() if line.strip().startswith(f"<t>[{index}]:"))
        listed = line.split(":", 1)[1].split(",")
        assert len(listed) == 3  # --top-k 3
        assert listed[0].split() == [word, "1.000"], line


def test_convert(tmp_path, capsys):
    source = os.path.join(FIXTURES, "kohya_fp16.safetensors")
    target = tmp_path / "out.pt"
    assert _run(["convert", source, str(target), "--format", "a1111",
                 "--placeholder", "<kohya>"]) == 0
    assert "Wrote" in capsys.readouterr().out
    converted = load_embedding(target)
    assert (converted.format, converted.placeholders, converted.dtype) == (
        "a1111", ["<kohya>"], "float16")
    np.testing.assert_array_equal(
        converted.vectors["<kohya>"], load_embedding(source).vectors["kohya_fp16"]
    )
    with pytest.raises(ValueError, match="exists; pass --overwrite"):
        _run(["convert", source, str(target), "--format", "a1111"])
    assert _run(["convert", source, str(target), "--format", "a1111", "--dtype", "float32",
                 "--overwrite"]) == 0
    assert load_embedding(target).dtype == "float32"


def test_convert_errors_are_user_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No embedding file"):
        _run(["convert", str(tmp_path / "missing.pt"), str(tmp_path / "x.safetensors"),
              "--format", "native"])
    with pytest.raises(ValueError, match="must end with one of"):
        _run(["convert", os.path.join(FIXTURES, "kohya_torch.pt"), str(tmp_path / "x.pt"),
              "--format", "native"])


def test_no_action_prints_help(capsys):
    assert _run([]) == 2
    assert "inspect" in capsys.readouterr().err
