import pytest

from studio.prompts.placeholder_token import (
    expand_placeholder,
    placeholder_token_strings,
    validate_placeholder_token,
)
from studio.tokenizers import CLIPTokenizer


@pytest.fixture
def tokenizer():
    return CLIPTokenizer.byte_level(sequence_length=32)


def test_new_word_is_accepted(tokenizer):
    assert validate_placeholder_token("<cat-toy>", tokenizer) == "<cat-toy>"
    assert validate_placeholder_token("<cat-toy>") == "<cat-toy>"


@pytest.mark.parametrize("token", ["", "<cat toy>", "<cat\ttoy>", " <x>", None])
def test_empty_or_whitespace_is_refused(token):
    with pytest.raises(ValueError, match="Received"):
        validate_placeholder_token(token)


def test_vocabulary_word_is_refused(tokenizer):
    # In the byte-level vocabulary every single character is a token, bare
    # and with the end-of-word mark.
    assert tokenizer.token_to_id("a</w>") is not None
    with pytest.raises(ValueError, match=r"Received: 'a', which is vocabulary token 'a'"):
        validate_placeholder_token("a", tokenizer)


def test_registered_placeholder_is_accepted_again(tokenizer):
    tokenizer.add_placeholder_tokens("<x>", num_vectors=2)
    assert validate_placeholder_token("<x>", tokenizer) == "<x>"


def test_multi_vector_token_strings_match_the_tokenizer(tokenizer):
    assert placeholder_token_strings("<x>", 3) == ["<x>", "<x>_1", "<x>_2"]
    assert placeholder_token_strings("<x>") == ["<x>"]
    ids = tokenizer.add_placeholder_tokens("<x>", num_vectors=3)
    assert [tokenizer.token_to_id(s) for s in placeholder_token_strings("<x>", 3)] == ids
    with pytest.raises(ValueError, match="Received: num_vectors=0"):
        placeholder_token_strings("<x>", 0)


def test_expand_placeholder():
    assert expand_placeholder("a photo of <x> and <x>", "<x>", 3) == (
        "a photo of <x> <x>_1 <x>_2 and <x> <x>_1 <x>_2"
    )
    once = expand_placeholder("a <x> toy", "<x>", 2)
    assert expand_placeholder(once, "<x>", 2) == once
    assert expand_placeholder("a <x> toy", "<x>", 1) == "a <x> toy"
    assert expand_placeholder("no placeholder", "<x>", 4) == "no placeholder"


def test_a_new_word_without_brackets_warns_what_will_happen(tokenizer):
    """Issue 23, item 6: `--token redc` is accepted, with a warning."""
    import warnings

    from studio.errors import StudioWarning

    with pytest.warns(StudioWarning, match=r"'redc' has no brackets.*'<redc>'"):
        assert validate_placeholder_token("redc", tokenizer) == "redc"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_placeholder_token("<redc>", tokenizer)
        validate_placeholder_token("redc")  # Without a tokenizer only the form is checked.
