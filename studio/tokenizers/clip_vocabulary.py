"""Finds and reads CLIP's byte-pair vocabulary file (`bpe_simple_vocab_16e6.txt.gz`).

The file is OpenAI's, as published with CLIP and used by KerasCV; it is the
same file for Stable Diffusion 1.x and 2.x. Keras is imported only when the
file has to be downloaded, so reading a local copy needs neither Keras nor
TensorFlow.
"""

import gzip
import hashlib
import os

from studio.errors import InvalidInputError
from studio.errors import StudioError
from studio.files.keras_home import keras_home

CLIP_VOCABULARY_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
CLIP_VOCABULARY_ORIGIN = (
    "https://github.com/openai/CLIP/blob/main/clip/bpe_simple_vocab_16e6.txt.gz?raw=true"
)
# The published (gzip) file's sha256, the one KerasCV checks.
CLIP_VOCABULARY_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
# The sha256 of its decompressed text, so that a plain-text or re-compressed
# copy (whose gzip header, hence its hash, differs) is still recognised.
CLIP_VOCABULARY_TEXT_SHA256 = "67603cfda2e032ad77b5f8808af37789d590db664b26df8705d2bf8b3c553fc8"
# CLIP's vocabulary has 49408 entries: 256 byte symbols, the same 256 ending
# a word ("</w>"), the first 48894 merges of the file (it lists more) and the
# start and end tokens.
CLIP_VOCABULARY_SIZE = 49408
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
BYTE_COUNT = 256
CLIP_MERGE_COUNT = CLIP_VOCABULARY_SIZE - 2 * BYTE_COUNT - 2
# Keras keeps downloads in $KERAS_HOME/<cache_subdir>; KerasCV uses the default.
KERAS_CACHE_SUBDIR = "datasets"
_GZIP_MAGIC = b"\x1f\x8b"


class VocabularyNotFoundError(StudioError, FileNotFoundError):
    """The CLIP vocabulary file could not be found locally nor downloaded."""


class VocabularyMismatchError(StudioError, ValueError):
    """A file given as the CLIP vocabulary is not the published one."""


_HOW_TO_GET_IT = (
    f"The file {CLIP_VOCABULARY_FILENAME} is published with OpenAI's CLIP at "
    f"{CLIP_VOCABULARY_ORIGIN} (it is also inside the open-clip-torch wheel, as "
    f"open_clip/{CLIP_VOCABULARY_FILENAME}). Download it on a machine with internet "
    "access, then either pass its path, or the folder holding it (command line: "
    "`--vocabulary FILE`; Python: `CLIPTokenizer.from_vocabulary_file(path)`), or "
    "copy it into the Keras cache "
    "as {cache_path}, where it is found without downloading."
)


def get_clip_vocabulary_path(path=None):
    """Returns the local path of CLIP's vocabulary file, downloading it if needed.

    Args:
        path: None to use the Keras cache (the file is downloaded once, from
            `CLIP_VOCABULARY_ORIGIN`, and its hash checked by Keras), or a local
            copy: the file itself (gzip or plain text) or a folder holding
            `bpe_simple_vocab_16e6.txt.gz` (or `bpe_simple_vocab_16e6.txt`).

    Returns:
        The path of the file, as a string.

    Raises:
        VocabularyNotFoundError: the local copy does not exist, or the file is
            not cached and cannot be downloaded (offline); the message says
            where the file comes from and how to point to a local copy.
        VocabularyMismatchError: the local file's sha256 is not the published
            file's (nor its text's).
    """
    if path is None:
        return _cached_or_downloaded()
    path = os.fspath(path)
    if os.path.isdir(path):
        candidates = [
            os.path.join(path, name)
            for name in (CLIP_VOCABULARY_FILENAME, CLIP_VOCABULARY_FILENAME[: -len(".gz")])
        ]
        found = [candidate for candidate in candidates if os.path.isfile(candidate)]
        if not found:
            raise VocabularyNotFoundError(
                f"The folder {path} does not hold the CLIP vocabulary: expected "
                f"{candidates[0]} (or its decompressed {os.path.basename(candidates[1])}). "
                f"{_how_to_get_it()} Received: path={path!r}"
            )
        path = found[0]
    elif not os.path.isfile(path):
        raise VocabularyNotFoundError(
            f"The CLIP vocabulary file {path} does not exist. {_how_to_get_it()} "
            f"Received: path={path!r}"
        )
    _check_hash(path)
    return path


def load_clip_vocabulary(path):
    """Reads CLIP's vocabulary and merge rules from the vocabulary file.

    The file's first line is a header; each next line is a merge rule, two
    symbols separated by a space, best first. The vocabulary is built the way
    CLIP builds it: byte symbols, byte symbols ending a word, the merged pairs,
    then the start and end tokens.

    Args:
        path: the vocabulary file, gzip-compressed or plain text (see
            `get_clip_vocabulary_path`).

    Returns:
        `(vocabulary, merges)`: a dict token -> id of `CLIP_VOCABULARY_SIZE`
        entries and the list of `CLIP_MERGE_COUNT` merge rules ("i n").

    Raises:
        ValueError: the file holds fewer merge rules than CLIP uses.
    """
    lines = _read_text(path).split("\n")
    merges = lines[1 : 1 + CLIP_MERGE_COUNT]
    if len(merges) < CLIP_MERGE_COUNT or not all(merges):
        raise InvalidInputError(
            f"A CLIP vocabulary file holds at least {CLIP_MERGE_COUNT} merge rules "
            f"after its header line. Received: {path} with {len(lines) - 1} lines"
        )
    symbols = base_symbols()
    tokens = symbols + [merge.replace(" ", "") for merge in merges] + [START_TOKEN, END_TOKEN]
    return {token: token_id for token_id, token in enumerate(tokens)}, merges


def byte_level_vocabulary():
    """The vocabulary of a character-level CLIP tokenizer, with no merge rules.

    Returns:
        A dict token -> id: the 256 byte symbols, the 256 word-final ones
        ("a</w>"), the start and end tokens (514 entries). Any text can be
        encoded with it, so it needs no file (used by offline tests).
    """
    tokens = base_symbols() + [START_TOKEN, END_TOKEN]
    return {token: token_id for token_id, token in enumerate(tokens)}


def base_symbols():
    """The 256 byte symbols then the same 256 ending a word, in CLIP's order."""
    symbols = list(bytes_to_symbols().values())
    return symbols + [symbol + END_OF_WORD for symbol in symbols]


def bytes_to_symbols():
    """Maps each of the 256 byte values to the printable character CLIP uses for it.

    Byte-pair merges work on strings, so every byte gets one character; the
    bytes that are already printable (and not a space) keep their own
    character, the others are shifted above 255 so that no symbol is
    whitespace or a control character. This is GPT-2's and CLIP's table; the
    vocabulary file is written with it.

    Returns:
        A dict byte value -> one-character string, printable bytes first.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(BYTE_COUNT):
        if byte not in table:
            table[byte] = chr(BYTE_COUNT + shifted)
            shifted += 1
    return table


def _cached_or_downloaded():
    import keras  # Lazily: only a download needs Keras.

    try:
        return keras.utils.get_file(
            fname=CLIP_VOCABULARY_FILENAME,
            origin=CLIP_VOCABULARY_ORIGIN,
            file_hash=CLIP_VOCABULARY_SHA256,
            cache_subdir=KERAS_CACHE_SUBDIR,
        )
    except Exception as error:  # get_file raises bare Exception offline.
        raise VocabularyNotFoundError(
            f"Could not download the CLIP vocabulary file {CLIP_VOCABULARY_FILENAME} "
            f"({type(error).__name__}: {error}). {_how_to_get_it()}"
        ) from error


def _how_to_get_it():
    cache_path = keras_home(KERAS_CACHE_SUBDIR, CLIP_VOCABULARY_FILENAME)
    return _HOW_TO_GET_IT.format(cache_path=cache_path)


def _check_hash(path):
    with open(path, "rb") as file:
        data = file.read()
    file_hash = hashlib.sha256(data).hexdigest()
    if file_hash == CLIP_VOCABULARY_SHA256:
        return
    try:
        text_hash = hashlib.sha256(_decompress(data)).hexdigest()
    except (OSError, EOFError):  # A corrupt gzip file.
        text_hash = "unreadable"
    if text_hash == CLIP_VOCABULARY_TEXT_SHA256:
        return
    raise VocabularyMismatchError(
        f"The file {path} is not CLIP's vocabulary {CLIP_VOCABULARY_FILENAME}: its "
        f"sha256 is {file_hash} (text: {text_hash}), expected {CLIP_VOCABULARY_SHA256} "
        f"for the published file (or {CLIP_VOCABULARY_TEXT_SHA256} for its "
        f"decompressed text). {_how_to_get_it()}"
    )


def _read_text(path):
    with open(path, "rb") as file:
        return _decompress(file.read()).decode("utf-8")


def _decompress(data):
    # By content, not by name: a decompressed copy may keep the ".gz" name.
    return gzip.decompress(data) if data.startswith(_GZIP_MAGIC) else data
