"""Placeholder tokens: the new words textual inversion learns, such as `<cat-toy>`.

A placeholder learned with several vectors is written as one word in prompts
(`<cat-toy>`); it stands for the token strings `<cat-toy>`, `<cat-toy>_1`, ...
(the naming of diffusers and of the studio's tokenizer, which expands the
word itself). `expand_placeholder` does the same expansion on text, for
tokenizers or tools that do not.
"""

import re
import warnings

from studio.errors import InvalidInputError, StudioWarning

# `<x>`'s extra vectors are `<x>_1`, `<x>_2`, ...
VECTOR_SUFFIX = "_{index}"
# CLIP's byte-pair vocabulary marks a word's last piece with this suffix, so a
# word exists in it either bare or with the suffix.
END_OF_WORD = "</w>"


def validate_placeholder_token(token, tokenizer=None):
    """Checks that `token` can be a new placeholder token.

    A placeholder must be one non-empty word (no whitespace) and must not
    already be a real vocabulary token: learning an embedding for `cat`
    would change every prompt that says "cat". A token the tokenizer already
    holds as a placeholder (a resumed run) is accepted.

    Args:
        token: str, e.g. `"<cat-toy>"`.
        tokenizer: optional tokenizer with `token_to_id(str) -> int | None`
            (and optionally `placeholder_tokens`), such as
            `studio.tokenizers.CLIPTokenizer`. Without one, only the form
            is checked.

    Returns:
        `token`, unchanged.

    Raises:
        InvalidInputError: if `token` is empty, contains whitespace, or is a
            word of the tokenizer's vocabulary.

    Warns:
        StudioWarning: a new token without the usual brackets (`redc`
            rather than `<redc>`), checked with a tokenizer.
    """
    if not isinstance(token, str) or not token:
        raise InvalidInputError(
            f"A placeholder token must be a non-empty string such as '<my-concept>'. "
            f"Received: {token!r}"
        )
    if re.search(r"\s", token):
        raise InvalidInputError(
            "A placeholder token must be one word, without whitespace, such as "
            f"'<my-concept>'. Received: {token!r}"
        )
    if tokenizer is None or token in (getattr(tokenizer, "placeholder_tokens", None) or {}):
        return token
    for candidate in (token, token + END_OF_WORD):
        if tokenizer.token_to_id(candidate) is not None:
            raise InvalidInputError(
                "A placeholder token must be a new word, not one the tokenizer "
                "already knows (its embedding would change every prompt that uses "
                f"it); try '<{token.strip('<>')}>'. Received: {token!r}, which is "
                f"vocabulary token {candidate!r}"
            )
    if not (token.startswith("<") and token.endswith(">")):
        warnings.warn(
            f"The placeholder {token!r} has no brackets, so it reads like an ordinary "
            f"word: it becomes a new word of the model, and every prompt that contains "
            f"{token!r} as a word gets the learned vectors. The usual form is "
            f"'<{token}>', which no prompt says by accident.",
            StudioWarning,
            stacklevel=2,
        )
    return token


def placeholder_token_strings(token, num_vectors=1):
    """The token strings of a placeholder with `num_vectors` vectors.

    >>> placeholder_token_strings("<x>", 3)
    ['<x>', '<x>_1', '<x>_2']
    """
    if not isinstance(num_vectors, int) or num_vectors < 1:
        raise InvalidInputError(
            f"`num_vectors` must be an integer of at least 1. Received: num_vectors={num_vectors!r}"
        )
    return [token] + [token + VECTOR_SUFFIX.format(index=i) for i in range(1, num_vectors)]


def expand_placeholder(text, token, num_vectors=1):
    """Writes out each `token` in `text` as its `num_vectors` token strings.

    Text that already names one of the extra vectors (`<x>_1`) is returned
    as it is, so expanding twice changes nothing.

    >>> expand_placeholder("a photo of <x> on a table", "<x>", 3)
    'a photo of <x> <x>_1 <x>_2 on a table'

    Args:
        text: str, a prompt.
        token: str, the placeholder.
        num_vectors: int, at least 1.

    Returns:
        The prompt with every occurrence expanded.
    """
    strings = placeholder_token_strings(token, num_vectors)
    if num_vectors == 1 or re.search(re.escape(token) + r"_\d", text):
        # Already expanded (`<x>_1` is there): leave the text alone rather than
        # guess which occurrences belong together.
        return text
    return text.replace(token, " ".join(strings))
