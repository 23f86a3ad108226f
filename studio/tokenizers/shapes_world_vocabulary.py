"""The shapes world's byte-pair vocabulary: a small CLIP-format merges file shipped with the package.

The file has CLIP's layout (a header line, then one merge rule per line,
best first), learned with byte-pair encoding from the world's word list so
that every word of the world is one token; any other text still tokenizes,
byte by byte. The tokenizer is a `CLIPTokenizer` (same interface,
placeholder tokens included) with this vocabulary inline.
"""

import collections
import os

from studio.files.atomic_write import write_file_atomically
from studio.tokenizers.clip_tokenizer import CLIPTokenizer
from studio.tokenizers.clip_vocabulary import END_OF_WORD
from studio.tokenizers.clip_vocabulary import END_TOKEN
from studio.tokenizers.clip_vocabulary import START_TOKEN
from studio.tokenizers.clip_vocabulary import base_symbols
from studio.tokenizers.clip_vocabulary import bytes_to_symbols

SHAPES_WORLD_MERGES_FILENAME = "shapes_world_merges.txt"
MERGES_HEADER = "#version: shapes-world bpe, learned by studio.tokenizers.learn_merges"
# Captions of the world are short ("a small red circle on a white
# background": 10 tokens with start and end); room for placeholders too.
SHAPES_WORLD_SEQUENCE_LENGTH = 16


def shapes_world_merges_path():
    """The merges file inside the installed package."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), SHAPES_WORLD_MERGES_FILENAME)


def learn_merges(words):
    """Learns byte-pair merges until every word of `words` is one token.

    Each step merges the most frequent adjacent pair over the words (ties:
    the alphabetically first pair), as in Sennrich et al. (2016); applying
    the result best-first, as `CLIPTokenizer` does, turns each word back
    into one token.

    Args:
        words: iterable of lowercase words.

    Returns:
        List of merge rules, "left right", best first.
    """
    symbols = bytes_to_symbols()
    pieces = {}
    for word in sorted(set(words)):
        chars = [symbols[b] for b in word.encode("utf-8")]
        chars[-1] += END_OF_WORD
        pieces[word] = chars
    merges = []
    while True:
        counts = collections.Counter()
        for parts in pieces.values():
            counts.update(zip(parts, parts[1:]))
        if not counts:
            return merges
        best_count = max(counts.values())
        left, right = min(pair for pair, count in counts.items() if count == best_count)
        merges.append(f"{left} {right}")
        for word, parts in pieces.items():
            merged, index = [], 0
            while index < len(parts):
                if index + 1 < len(parts) and parts[index] == left and parts[index + 1] == right:
                    merged.append(left + right)
                    index += 2
                else:
                    merged.append(parts[index])
                    index += 1
            pieces[word] = merged


def write_merges_file(words, path):
    """Writes the merges learned from `words` to `path` (atomically)."""
    merges = learn_merges(words)
    text = "\n".join([MERGES_HEADER] + merges) + "\n"
    return write_file_atomically(path, text.encode("utf-8"))


def load_shapes_world_vocabulary(path=None):
    """Reads a merges file; returns `(vocabulary, merges)` as CLIP builds them.

    The vocabulary is the 512 byte symbols, one token per merge, then the
    start and end tokens.
    """
    path = path or shapes_world_merges_path()
    with open(path, encoding="utf-8") as file:
        lines = [line for line in file.read().split("\n")[1:] if line]
    tokens = base_symbols() + [merge.replace(" ", "") for merge in lines]
    tokens += [START_TOKEN, END_TOKEN]
    if len(set(tokens)) != len(tokens):
        raise ValueError(
            "A merges file must not produce the same token twice. "
            f"Received: {path} with {len(tokens) - len(set(tokens))} repeated tokens"
        )
    return {token: token_id for token_id, token in enumerate(tokens)}, lines


def shapes_world_tokenizer(sequence_length=SHAPES_WORLD_SEQUENCE_LENGTH, path=None):
    """A `CLIPTokenizer` with the shapes world's vocabulary (inline in its config).

    Args:
        sequence_length: length of the rows the tokenizer returns.
        path: a merges file; None for the one shipped with the package.
    """
    vocabulary, merges = load_shapes_world_vocabulary(path)
    return CLIPTokenizer(vocabulary, merges, sequence_length=sequence_length)
