import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from studio.tokenizers import CLIPTokenizer
from studio.tokenizers import clip_tokenizer as clip_tokenizer_module

START, END = 49406, 49407
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- CLIP's real vocabulary ----------------------------------------------------

# Ids as produced by OpenAI's CLIP tokenizer.
@pytest.mark.parametrize(
    "text, ids",
    [
        ("a photo of a cat", [START, 320, 1125, 539, 320, 2368, END]),
        ("hello world", [START, 3306, 1002, END]),
        ("a diagram", [START, 320, 22697, END]),
        ("a dog", [START, 320, 1929, END]),
        # Lowercased; punctuation is its own word.
        ("Hello, World!", [START, 3306, 267, 1002, 256, END]),
        ("a cat.", [START, 320, 2368, 269, END]),
        # Digits are split one by one.
        ("123", [START, 272, 273, 274, END]),
        ("", [START, END]),
    ],
)
def test_known_clip_ids(clip_tokenizer, text, ids):
    assert clip_tokenizer.encode(text) == ids


def test_non_ascii_and_emoji_round_trip(clip_tokenizer):
    text = "a café 🐱 in 東京, naïve straße"
    ids = clip_tokenizer.encode(text)
    assert all(0 <= i < START for i in ids[1:-1])
    assert clip_tokenizer.decode(ids) == "a café 🐱 in 東京 , naïve straße"


def test_cleaning_whitespace_html_and_case(clip_tokenizer):
    expected = clip_tokenizer.encode("a photo of a cat & a dog")
    assert clip_tokenizer.encode("  A\tPhoto\n of a   CAT &amp; a dog ") == expected
    # OpenAI unescapes twice.
    assert clip_tokenizer.encode("a photo of a cat &amp;amp; a dog") == expected


def test_ftfy_repairs_mojibake_when_installed(clip_tokenizer):
    pytest.importorskip("ftfy")
    assert clip_tokenizer.encode("a cafÃ©") == clip_tokenizer.encode("a café")


def test_works_without_ftfy(clip_tokenizer, monkeypatch):
    monkeypatch.setattr(clip_tokenizer_module, "ftfy", None)
    ids = clip_tokenizer.encode("a cafÃ©")
    assert ids != clip_tokenizer.encode("a café")
    assert clip_tokenizer.decode(ids) == "a cafã ©"  # "©" is not a letter.


def test_typed_special_token_is_the_token(clip_tokenizer):
    # As in OpenAI's tokenizer, not byte-pair text.
    assert clip_tokenizer.encode("a <|endoftext|> cat") == [START, 320, END, 2368, END]


def test_call_pads_with_end_token(clip_tokenizer):
    rows = clip_tokenizer(["a photo of a cat", "a dog"])
    assert rows.shape == (2, 77) and rows.dtype == np.int32
    assert rows[0, :7].tolist() == [START, 320, 1125, 539, 320, 2368, END]
    assert (rows[0, 7:] == END).all()
    assert rows[1, :4].tolist() == [START, 320, 1929, END]
    assert clip_tokenizer("a dog").shape == (1, 77)
    np.testing.assert_array_equal(clip_tokenizer("a dog")[0], rows[1])


def test_other_pad_token_and_decode_drops_only_trailing_padding(clip_vocabulary):
    vocabulary, merges = clip_vocabulary
    tokenizer = CLIPTokenizer(vocabulary, merges, sequence_length=16, pad_token="!")
    assert tokenizer.pad_token_id == 0
    row = tokenizer("wow! a cat")[0]
    assert row.tolist() == tokenizer.encode("wow! a cat") + [0] * 10
    assert tokenizer.decode(row) == "wow ! a cat"


def test_exactly_full_prompt_is_not_truncated(clip_tokenizer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = clip_tokenizer(" ".join(["cat"] * 75))[0]
    assert row.tolist() == [START] + [2368] * 75 + [END]


def test_long_prompt_is_truncated_keeping_end_token(clip_tokenizer):
    with pytest.warns(UserWarning, match="truncate=False") as record:
        rows = clip_tokenizer([" ".join(["cat"] * 100), "a dog", " ".join(["dog"] * 80)])
    assert len(record) == 1
    assert "2 of 3 prompts" in str(record[0].message) and "102" in str(record[0].message)
    assert rows[0].tolist() == [START] + [2368] * 75 + [END]
    assert rows[2].tolist() == [START] + [1929] * 75 + [END]


def test_long_prompt_raises_with_token_count_when_not_truncating(clip_tokenizer):
    with pytest.raises(ValueError, match="78 tokens"):
        clip_tokenizer(" ".join(["cat"] * 76), truncate=False)
    assert clip_tokenizer(" ".join(["cat"] * 75), truncate=False).shape == (1, 77)


def test_call_rejects_non_strings(clip_tokenizer):
    with pytest.raises(TypeError, match="Received"):
        clip_tokenizer(["a cat", 3])
    with pytest.raises(TypeError, match="Received"):
        clip_tokenizer(None)


def test_tokenize_words_gives_all_pieces_of_a_word(clip_tokenizer):
    ids = clip_tokenizer.tokenize_words("cat-toy")
    assert len(ids) == 3  # "cat", "-", "toy"
    assert ids == clip_tokenizer.encode("cat-toy")[1:-1]
    assert ids[0] == 2368 and clip_tokenizer.id_to_token(ids[1]) == "-</w>"


def test_token_lookups(clip_tokenizer):
    assert clip_tokenizer.token_to_id("cat</w>") == 2368
    assert clip_tokenizer.id_to_token(2368) == "cat</w>"
    assert clip_tokenizer.token_to_id("<cat-toy>") is None
    assert clip_tokenizer.vocabulary_size == 49408
    for bad in (-1, 49408):
        with pytest.raises(ValueError, match="Received: token_id"):
            clip_tokenizer.id_to_token(bad)


@pytest.mark.keras_cv
@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="keras_cv needs TensorFlow")
def test_same_ids_as_keras_cv(clip_vocabulary_file, clip_tokenizer):
    from keras_cv.models.stable_diffusion import SimpleTokenizer

    reference = SimpleTokenizer(str(clip_vocabulary_file))
    texts = [
        "An astronaut riding a horse on Mars, 4k, trending on artstation!!!",
        "I'm sure we'll've they'd it's",
        "naïve façade Straße ÀÉÎ 日本語のテキスト",
        "🐱🐶 emoji 👩‍🚀 (((masterpiece))), [best quality] 3.14159",
        "supercalifragilisticexpialidocious " * 3,
    ]
    for text in texts:
        assert clip_tokenizer.encode(text) == reference.encode(text), text


# --- character-level tokenizer (no file) --------------------------------------

def test_byte_level_vocabulary_layout():
    tokenizer = CLIPTokenizer.byte_level(sequence_length=8)
    assert tokenizer.vocabulary_size == 514
    assert (tokenizer.start_token_id, tokenizer.end_token_id) == (512, 513)
    assert tokenizer.pad_token_id == tokenizer.end_token_id
    ids = tokenizer.encode("cat")
    assert [tokenizer.id_to_token(i) for i in ids] == [
        "<|startoftext|>", "c", "a", "t</w>", "<|endoftext|>",
    ]
    assert tokenizer("cat").tolist() == [ids + [513] * 3]


@pytest.mark.parametrize(
    "text", ["a photo of 3 cats", "café über 東京 🐱 👩‍🚀", "ÿ ¡ ω ∑ x"]
)
def test_byte_level_round_trip(text):
    tokenizer = CLIPTokenizer.byte_level()
    ids = tokenizer.encode(text)
    assert len(ids) == len(text.replace(" ", "").encode("utf-8")) + 2
    assert tokenizer.decode(ids) == text.lower()


def test_decode_accepts_arrays_and_rejects_batches():
    tokenizer = CLIPTokenizer.byte_level(sequence_length=12)
    rows = tokenizer(["ab cd", "x"])
    assert tokenizer.decode(rows[0]) == "ab cd"
    assert tokenizer.decode(keras.ops.convert_to_tensor(rows[1])) == "x"
    with pytest.raises(ValueError, match="1-D"):
        tokenizer.decode(rows)


def test_custom_vocabulary_applies_merges_by_rank():
    base = CLIPTokenizer.byte_level().vocabulary
    vocabulary = dict(base)
    for token in ("ca", "at</w>", "cat</w>"):
        vocabulary[token] = len(vocabulary)
    # "c a" ranks before "a t</w>", so "cat" becomes "ca" + "t</w>", then "cat</w>".
    tokenizer = CLIPTokenizer(vocabulary, ["c a", "a t</w>", "ca t</w>"])
    assert tokenizer.tokenize_words("cat") == [vocabulary["cat</w>"]]
    assert tokenizer.tokenize_words("at") == [vocabulary["at</w>"]]
    tokenizer = CLIPTokenizer(vocabulary, ["a t</w>", "c a", "ca t</w>"])
    assert tokenizer.tokenize_words("cat") == [base["c"], vocabulary["at</w>"]]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(merges=["c a"]), "merges\\[0\\]='c a'"),
        (dict(merges=["ab"]), "two pieces"),
        (dict(pad_token="<pad>"), "pad_token='<pad>'"),
        (dict(start_token="<s>"), "start_token='<s>'"),
        (dict(sequence_length=1), "sequence_length=1"),
        (dict(vocabulary={"<|startoftext|>": 0, "<|endoftext|>": 2}), "ids must be 0..n-1"),
    ],
)
def test_constructor_validation(change, message):
    arguments = dict(vocabulary=CLIPTokenizer.byte_level().vocabulary, merges=[])
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        CLIPTokenizer(**arguments)


def test_custom_vocabulary_without_some_bytes_raises_clearly():
    vocabulary = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2}
    tokenizer = CLIPTokenizer(vocabulary, [])
    assert tokenizer.encode("a") == [0, 2, 1]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tokenizer.encode("b")


# --- placeholders -----------------------------------------------------------------

def test_single_placeholder(clip_tokenizer):
    assert clip_tokenizer.add_placeholder_tokens("<cat-toy>") == [49408]
    assert clip_tokenizer.vocabulary_size == 49409
    assert clip_tokenizer.token_to_id("<cat-toy>") == 49408
    assert clip_tokenizer.id_to_token(49408) == "<cat-toy>"
    ids = clip_tokenizer.encode("a photo of <cat-toy>")
    assert ids == [START, 320, 1125, 539, 49408, END]
    assert clip_tokenizer.decode(ids) == "a photo of <cat-toy>"
    assert clip_tokenizer("a photo of <cat-toy>")[0, 4] == 49408


def test_multi_vector_placeholder(clip_tokenizer):
    ids = clip_tokenizer.add_placeholder_tokens("<cat-toy>", 3)
    assert ids == [49408, 49409, 49410]
    assert [clip_tokenizer.id_to_token(i) for i in ids] == [
        "<cat-toy>", "<cat-toy>_1", "<cat-toy>_2",
    ]
    assert clip_tokenizer.placeholder_tokens == {"<cat-toy>": ids}
    toy = clip_tokenizer.tokenize_words("toy")
    encoded = clip_tokenizer.encode("a <cat-toy> toy")
    assert encoded == [START, 320, *ids, *toy, END]
    assert clip_tokenizer.decode(encoded) == "a <cat-toy> toy"
    # Repeated placeholders decode one by one.
    assert clip_tokenizer.decode(ids + ids) == "<cat-toy> <cat-toy>"


def test_placeholder_next_to_punctuation_and_inside_words(clip_tokenizer):
    (token,) = clip_tokenizer.add_placeholder_tokens("<tok>")
    words = clip_tokenizer.tokenize_words
    assert words("<tok>, a cat") == [token, 267, 320, 2368]
    assert words("(<tok>)") == words("(") + [token] + words(")")
    assert words("x<tok>y") == words("x") + [token] + words("y")
    assert words("<tok><tok>") == [token, token]


def test_two_placeholders_in_one_prompt(clip_tokenizer):
    cat = clip_tokenizer.add_placeholder_tokens("<my-cat>", 2)
    dog = clip_tokenizer.add_placeholder_tokens("<my-dog>")
    assert dog == [49410]
    ids = clip_tokenizer.encode("<my-dog> and <my-cat> on a beach")
    assert ids == [START, *dog, *clip_tokenizer.tokenize_words("and"), *cat,
                   *clip_tokenizer.tokenize_words("on a beach"), END]
    assert clip_tokenizer.decode(ids) == "<my-dog> and <my-cat> on a beach"
    assert list(clip_tokenizer.placeholder_tokens) == ["<my-cat>", "<my-dog>"]


@pytest.mark.parametrize("order", [["<a>", "<ab>"], ["<ab>", "<a>"]])
def test_placeholders_that_are_prefixes_of_each_other(order):
    tokenizer = CLIPTokenizer.byte_level()
    ids = {placeholder: tokenizer.add_placeholder_tokens(placeholder) for placeholder in order}
    assert tokenizer.tokenize_words("<ab> <a>") == ids["<ab>"] + ids["<a>"]
    assert tokenizer.tokenize_words("<a>b>") == ids["<a>"] + tokenizer.tokenize_words("b>")


def test_placeholders_are_case_sensitive(clip_tokenizer):
    (token,) = clip_tokenizer.add_placeholder_tokens("<Cat-Toy>")
    assert clip_tokenizer.tokenize_words("a <Cat-Toy>") == [320, token]
    lowered = clip_tokenizer.tokenize_words("a <cat-toy>")
    assert token not in lowered and len(lowered) > 2
    with pytest.raises(ValueError, match="only in case"):
        clip_tokenizer.add_placeholder_tokens("<cat-toy>")


@pytest.mark.parametrize(
    "placeholder, num_vectors, error, message",
    [
        ("", 1, ValueError, "must not be empty"),
        ("<cat toy>", 1, ValueError, "whitespace"),
        ("<cat\ttoy>", 1, ValueError, "whitespace"),
        ("cat</w>", 1, ValueError, "vocabulary token"),
        ("cat", 1, ValueError, "vocabulary token"),
        ("Cat", 1, ValueError, "vocabulary token"),
        ("<|endoftext|>", 1, ValueError, "vocabulary token"),
        ("<cat-toy>", 0, ValueError, "num_vectors"),
        ("<cat-toy>", -2, ValueError, "num_vectors"),
        ("<cat-toy>", 1.5, ValueError, "num_vectors"),
        (None, 1, TypeError, "must be a string"),
    ],
)
def test_placeholder_validation(clip_tokenizer, placeholder, num_vectors, error, message):
    with pytest.raises(error, match=message) as info:
        clip_tokenizer.add_placeholder_tokens(placeholder, num_vectors)
    assert "Received" in str(info.value)
    assert clip_tokenizer.vocabulary_size == 49408
    assert clip_tokenizer.placeholder_tokens == {}


def test_placeholder_already_added_or_clashing_with_added_token():
    tokenizer = CLIPTokenizer.byte_level()
    ids = tokenizer.add_placeholder_tokens("<a>", 2)
    with pytest.raises(ValueError, match="already added") as info:
        tokenizer.add_placeholder_tokens("<a>")
    assert str(ids) in str(info.value)
    with pytest.raises(ValueError, match="'<a>_1' already exists"):
        tokenizer.add_placeholder_tokens("<a>_1")
    assert tokenizer.vocabulary_size == 516


# --- configuration ----------------------------------------------------------------

def _round_trip(tokenizer):
    config = json.loads(json.dumps(tokenizer.get_config()))
    return config, CLIPTokenizer.from_config(config)


def test_byte_level_config_round_trip_keeps_placeholders():
    tokenizer = CLIPTokenizer.byte_level(sequence_length=20)
    tokenizer.add_placeholder_tokens("<x>", 2)
    tokenizer.add_placeholder_tokens("<y>")
    config, rebuilt = _round_trip(tokenizer)
    assert config["vocabulary_source"] == "byte_level" and "vocabulary" not in config
    assert rebuilt.get_config() == tokenizer.get_config()
    assert rebuilt.placeholder_tokens == tokenizer.placeholder_tokens
    assert rebuilt.vocabulary_size == tokenizer.vocabulary_size == 517
    np.testing.assert_array_equal(rebuilt("a <y> <x>!"), tokenizer("a <y> <x>!"))


def test_file_config_names_the_file(clip_vocabulary_file):
    tokenizer = CLIPTokenizer.from_vocabulary_file(clip_vocabulary_file, pad_token="!")
    tokenizer.add_placeholder_tokens("<cat-toy>", 2)
    config, rebuilt = _round_trip(tokenizer)
    assert config["vocabulary_file"] == str(clip_vocabulary_file)
    assert "vocabulary" not in config and "merges" not in config
    assert rebuilt.get_config() == tokenizer.get_config()
    np.testing.assert_array_equal(rebuilt("a <cat-toy> toy"), tokenizer("a <cat-toy> toy"))
    assert rebuilt.pad_token_id == 0


def test_inline_config_carries_vocabulary():
    vocabulary = dict(CLIPTokenizer.byte_level().vocabulary)
    vocabulary["ab</w>"] = len(vocabulary)
    tokenizer = CLIPTokenizer(vocabulary, ["a b</w>"], sequence_length=10)
    tokenizer.add_placeholder_tokens("<p>")
    config, rebuilt = _round_trip(tokenizer)
    assert config["vocabulary"] == vocabulary and config["merges"] == ["a b</w>"]
    assert rebuilt.encode("ab <p>") == tokenizer.encode("ab <p>") == [512, 514, 515, 513]


def test_unknown_vocabulary_source_raises():
    config = CLIPTokenizer.byte_level().get_config()
    config["vocabulary_source"] = "sentencepiece"
    with pytest.raises(ValueError, match="vocabulary_source='sentencepiece'"):
        CLIPTokenizer.from_config(config)


# --- backend isolation ----------------------------------------------------------

def test_tokenizer_imports_neither_keras_nor_tensorflow(clip_vocabulary_file):
    code = (
        "import sys\n"
        "from studio.tokenizers import CLIPTokenizer\n"
        f"tokenizer = CLIPTokenizer.from_vocabulary_file({str(clip_vocabulary_file)!r})\n"
        "assert tokenizer.encode('a cat')[1:-1] == [320, 2368]\n"
        "CLIPTokenizer.byte_level()('a cat')\n"
        "bad = [m for m in ('tensorflow', 'keras_cv', 'keras') if m in sys.modules]\n"
        "assert not bad, f'imported {bad}'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
        env=dict(os.environ, KERAS_BACKEND="jax"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
