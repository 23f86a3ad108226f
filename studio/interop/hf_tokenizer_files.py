"""Hugging Face CLIP tokenizer folders (`tokenizer/` of a diffusers model).

A folder holds `vocab.json` (token -> id) and `merges.txt` (a version
line, then one merge rule per line, best first), or a `tokenizer.json`
with both, plus `tokenizer_config.json` / `special_tokens_map.json`
naming the special tokens (SD 2.x pads with "!", SD 1.x with the end
token) and `added_tokens.json` for tokens added after training (e.g. a
textual-inversion placeholder). The token strings are CLIP's byte-level
symbols, the same as `studio.tokenizers.CLIPTokenizer`'s.
"""

import os

from studio.files.json_file import read_json_object, write_json
from studio.interop.checkpoint_format_error import CheckpointFormatError

VOCABULARY_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_JSON_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"
MERGES_VERSION_LINE = "#version: 0.2"
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
DEFAULT_SEQUENCE_LENGTH = 77
# transformers writes a huge `model_max_length` (1e30) when none was set.
MAX_PLAUSIBLE_SEQUENCE_LENGTH = 100_000


def is_hf_tokenizer_folder(path):
    """True when `path` is a folder with `vocab.json` or `tokenizer.json`."""
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, name)) for name in (VOCABULARY_FILE, TOKENIZER_JSON_FILE)
    )


def read_hf_tokenizer(folder, sequence_length=None):
    """Builds a `CLIPTokenizer` from a Hugging Face tokenizer folder.

    Args:
        folder: the folder (see the module docstring).
        sequence_length: length of the token rows; None takes the folder's
            `model_max_length` (77 when it has none).

    Returns:
        A `studio.tokenizers.CLIPTokenizer`; tokens added after the base
        vocabulary become placeholder tokens with the same ids.

    Raises:
        CheckpointFormatError: files are missing or inconsistent.
    """
    from studio.tokenizers import CLIPTokenizer

    vocabulary, merges = _vocabulary_and_merges(folder)
    config = _read_json(folder, TOKENIZER_CONFIG_FILE)
    special = _read_json(folder, SPECIAL_TOKENS_FILE)

    def special_token(name, default):
        value = special.get(name, config.get(name)) or default
        return value.get("content", default) if isinstance(value, dict) else value

    if sequence_length is None:
        sequence_length = config.get("model_max_length", DEFAULT_SEQUENCE_LENGTH)
        if not isinstance(sequence_length, int) or sequence_length > MAX_PLAUSIBLE_SEQUENCE_LENGTH:
            sequence_length = DEFAULT_SEQUENCE_LENGTH
    try:
        tokenizer = CLIPTokenizer(
            vocabulary,
            merges,
            sequence_length=sequence_length,
            pad_token=special_token("pad_token", END_TOKEN),
            start_token=special_token("bos_token", START_TOKEN),
            end_token=special_token("eos_token", END_TOKEN),
        )
    except ValueError as error:
        raise CheckpointFormatError(f"{folder} is not a usable CLIP tokenizer: {error}") from None
    expected_id = len(vocabulary)
    for token, token_id in _added_tokens(folder, config, len(vocabulary)):
        if token_id != expected_id:
            raise CheckpointFormatError(
                f"{folder}: added tokens must follow the vocabulary without gaps; "
                f"expected id {expected_id} next. Received: {token!r} with id {token_id}"
            )
        expected_id += 1
    for placeholder, num_vectors in _placeholders(_added_tokens(folder, config, len(vocabulary))):
        tokenizer.add_placeholder_tokens(placeholder, num_vectors)
    return tokenizer


def write_hf_tokenizer(tokenizer, folder):
    """Writes `tokenizer` as a Hugging Face `CLIPTokenizer` folder.

    Args:
        tokenizer: a `studio.tokenizers.CLIPTokenizer`.
        folder: an existing folder.
    """
    write_json(os.path.join(folder, VOCABULARY_FILE), tokenizer.vocabulary,
               ensure_ascii=False, indent=None)
    with open(os.path.join(folder, MERGES_FILE), "w", encoding="utf-8") as file:
        file.write("\n".join([MERGES_VERSION_LINE, *tokenizer.merges]) + "\n")
    added = {
        tokenizer.id_to_token(token_id): token_id
        for ids in tokenizer.placeholder_tokens.values()
        for token_id in ids
    }
    special = {
        "bos_token": tokenizer.start_token,
        "eos_token": tokenizer.end_token,
        "pad_token": tokenizer.pad_token,
        "unk_token": tokenizer.end_token,
    }
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": tokenizer.sequence_length,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        **special,
        "added_tokens_decoder": {
            str(token_id): {
                "content": token,
                "lstrip": False,
                "normalized": True,
                "rstrip": False,
                "single_word": False,
                "special": False,
            }
            for token, token_id in added.items()
        },
    }
    _write_json(folder, SPECIAL_TOKENS_FILE, special)
    _write_json(folder, TOKENIZER_CONFIG_FILE, config)
    if added:
        _write_json(folder, ADDED_TOKENS_FILE, added)


def _vocabulary_and_merges(folder):
    vocabulary_path = os.path.join(folder, VOCABULARY_FILE)
    merges_path = os.path.join(folder, MERGES_FILE)
    if os.path.isfile(vocabulary_path) and os.path.isfile(merges_path):
        vocabulary = _read_json(folder, VOCABULARY_FILE)
        with open(merges_path, encoding="utf-8") as file:
            lines = file.read().split("\n")
        if lines and lines[0].startswith("#version"):
            lines = lines[1:]
        return vocabulary, [line for line in lines if line]
    tokenizer_json = _read_json(folder, TOKENIZER_JSON_FILE)
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise CheckpointFormatError(
            f"{folder} holds no CLIP tokenizer: expected {VOCABULARY_FILE} and "
            f"{MERGES_FILE}, or a byte-pair {TOKENIZER_JSON_FILE}. "
            f"Received: files {sorted(os.listdir(folder))}"
        )
    merges = [
        merge if isinstance(merge, str) else " ".join(merge) for merge in model.get("merges", [])
    ]
    return model["vocab"], merges


def _added_tokens(folder, config, base_size):
    """(token, id) of the tokens after the base vocabulary, by id."""
    added = dict(_read_json(folder, ADDED_TOKENS_FILE))
    for token_id, entry in (config.get("added_tokens_decoder") or {}).items():
        if isinstance(entry, dict) and "content" in entry:
            added.setdefault(entry["content"], int(token_id))
    return sorted(
        ((token, token_id) for token, token_id in added.items() if token_id >= base_size),
        key=lambda item: item[1],
    )


def _placeholders(added):
    """Groups added tokens into `(placeholder, num_vectors)`: diffusers names
    a placeholder's vectors "<x>", "<x>_1", "<x>_2", ..., as our tokenizer does."""
    groups = []
    for token, _ in added:
        if groups and token == f"{groups[-1][0]}_{groups[-1][1]}":
            groups[-1][1] += 1
        else:
            groups.append([token, 1])
    return [tuple(group) for group in groups]


def _read_json(folder, name):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return {}
    return read_json_object(path, CheckpointFormatError)


def _write_json(folder, name, value):
    write_json(os.path.join(folder, name), value, ensure_ascii=False)
