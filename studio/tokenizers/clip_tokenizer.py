"""CLIP's byte-pair tokenizer, with placeholder tokens for textual inversion.

Why our own and not `keras_cv.models.stable_diffusion.SimpleTokenizer`:
importing keras_cv imports TensorFlow, and the pipeline must run under
KERAS_BACKEND=jax on GPU machines that have no TensorFlow; we also need
placeholder tokens that expand to several ids. This module needs only
numpy and `regex` (for CLIP's `\\p{L}` / `\\p{N}` word pattern), plus `ftfy`
if installed. It produces the same ids as OpenAI's tokenizer, and as
KerasCV's except on text that ftfy repairs (KerasCV skips ftfy).
"""

import html
import warnings

import numpy as np
import regex

from studio.errors import InvalidInputError
from studio.tokenizers.clip_vocabulary import END_OF_WORD
from studio.tokenizers.clip_vocabulary import END_TOKEN
from studio.tokenizers.clip_vocabulary import START_TOKEN
from studio.tokenizers.clip_vocabulary import byte_level_vocabulary
from studio.tokenizers.clip_vocabulary import bytes_to_symbols
from studio.tokenizers.clip_vocabulary import get_clip_vocabulary_path
from studio.tokenizers.clip_vocabulary import load_clip_vocabulary

try:
    # OpenAI's CLIP repairs mojibake ("cafÃ©" -> "café") with ftfy before
    # tokenizing. It is optional here: without it such text is tokenized as
    # typed, which is also what KerasCV does; ordinary prompts are unaffected.
    import ftfy
except ImportError:
    ftfy = None

# Stable Diffusion's text encoders read 77 positions: start, 75 tokens, end.
DEFAULT_SEQUENCE_LENGTH = 77
# Start and end tokens take two positions, so shorter sequences hold no text.
MIN_SEQUENCE_LENGTH = 2
# CLIP's pre-tokenizer: English contractions, runs of letters, single digits,
# runs of other non-space characters.
WORD_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+"
# Words already split into byte-pair pieces; prompts reuse few words, and the
# bound keeps a long-running app's memory flat.
BPE_CACHE_SIZE = 50_000

# Where a tokenizer's vocabulary comes from, as written by `get_config`.
VOCABULARY_FROM_FILE = "clip_file"
VOCABULARY_BYTE_LEVEL = "byte_level"
VOCABULARY_INLINE = "inline"


class CLIPTokenizer:
    """Turns prompts into CLIP token ids, padded to `sequence_length`.

    Text is cleaned (ftfy if installed, HTML entities, whitespace), lowercased,
    split with CLIP's word pattern and each word split into byte-pair pieces
    (`merges`, best first). Placeholder tokens added with
    `add_placeholder_tokens` are found first, in the text as typed, and expand
    to their ids.

    Placeholders are matched case-sensitively, before lowercasing: a
    placeholder registered as "<Cat-Toy>" matches only "<Cat-Toy>", and
    "<cat-toy>" is tokenized as ordinary text. To keep that from surprising
    anyone, a placeholder may not differ only in case from another one nor
    from a vocabulary word ("Cat" would capture the word "cat" when
    capitalised). Placeholders are found anywhere, also inside words, longest
    first, so "<a>" and "<ab>" can both be used.

    Args:
        vocabulary: dict token -> id, ids 0..n-1 each used once; byte-level
            symbols in CLIP's convention (see `clip_vocabulary`), word-final
            pieces ending with "</w>".
        merges: byte-pair merge rules, best first, each two pieces separated by
            a space ("i n"); every merged piece must be in `vocabulary`.
        sequence_length: length of the rows returned by `__call__`.
        pad_token: token filling rows after the end token ("<|endoftext|>" for
            Stable Diffusion 1.x as in KerasCV; OpenCLIP pads with "!").
        start_token: token opening every sequence.
        end_token: token closing every sequence.

    Example:

    >>> tokenizer = CLIPTokenizer.from_vocabulary_file()
    >>> tokenizer.encode("a photo of a cat")
    [49406, 320, 1125, 539, 320, 2368, 49407]
    >>> tokenizer.add_placeholder_tokens("<cat-toy>", 2)
    [49408, 49409]
    >>> tokenizer("a <cat-toy> toy").shape
    (1, 77)
    """

    def __init__(
        self,
        vocabulary,
        merges,
        sequence_length=DEFAULT_SEQUENCE_LENGTH,
        pad_token=END_TOKEN,
        start_token=START_TOKEN,
        end_token=END_TOKEN,
    ):
        if (
            isinstance(sequence_length, bool)
            or not isinstance(sequence_length, int)
            or sequence_length < MIN_SEQUENCE_LENGTH
        ):
            raise ValueError(
                f"`sequence_length` must be an integer >= {MIN_SEQUENCE_LENGTH} (room "
                f"for the start and end tokens). Received: sequence_length={sequence_length!r}"
            )
        self.vocabulary = dict(vocabulary)
        self.merges = list(merges)
        self.sequence_length = sequence_length
        self.pad_token = pad_token
        self.start_token = start_token
        self.end_token = end_token
        _check_vocabulary(self.vocabulary)
        for name, token in (
            ("pad_token", pad_token),
            ("start_token", start_token),
            ("end_token", end_token),
        ):
            if token not in self.vocabulary:
                raise ValueError(
                    f"`{name}` must be a token of the vocabulary. Received: {name}={token!r}"
                )
        self._merge_ranks = _merge_ranks(self.merges, self.vocabulary)

        self._token_ids = dict(self.vocabulary)
        self._tokens = [None] * len(self.vocabulary)
        for token, token_id in self.vocabulary.items():
            self._tokens[token_id] = token
        self.start_token_id = self.vocabulary[start_token]
        self.end_token_id = self.vocabulary[end_token]
        self.pad_token_id = self.vocabulary[pad_token]

        self._byte_symbols = bytes_to_symbols()
        self._symbol_bytes = {symbol: byte for byte, symbol in self._byte_symbols.items()}
        # Like OpenAI's tokenizer, the start and end tokens typed in a prompt
        # (any case: the text is lowercased) are these tokens, not text.
        self._special_tokens = {start_token.lower(): start_token, end_token.lower(): end_token}
        self._word_pattern = regex.compile(
            "|".join(regex.escape(token) for token in self._special_tokens) + "|" + WORD_PATTERN,
            regex.IGNORECASE,
        )
        self._bpe_cache = {}

        self._placeholder_ids = {}  # placeholder -> its ids, in order of addition.
        self._placeholder_of_id = {}  # id -> (placeholder, position among its ids).
        self._placeholder_pattern = None

        # Set by the class methods, so that `get_config` can name the file
        # instead of copying 49408 tokens and 48894 merges.
        self._vocabulary_source = VOCABULARY_INLINE
        self._vocabulary_file = None

    @classmethod
    def from_vocabulary_file(
        cls, path=None, sequence_length=DEFAULT_SEQUENCE_LENGTH, pad_token=END_TOKEN
    ):
        """Builds CLIP's tokenizer from OpenAI's `bpe_simple_vocab_16e6.txt.gz`.

        Args:
            path: None to use the file in the Keras cache (downloaded once), or
                a local copy: the file (gzip or plain text) or its folder.
            sequence_length: length of the rows returned by `__call__`.
            pad_token: token filling rows after the end token.

        Returns:
            A `CLIPTokenizer` with CLIP's 49408 tokens.

        Raises:
            VocabularyNotFoundError: the file is missing and cannot be downloaded.
            VocabularyMismatchError: the local file is not the published one.
        """
        vocabulary, merges = load_clip_vocabulary(get_clip_vocabulary_path(path))
        tokenizer = cls(vocabulary, merges, sequence_length=sequence_length, pad_token=pad_token)
        tokenizer._vocabulary_source = VOCABULARY_FROM_FILE
        tokenizer._vocabulary_file = None if path is None else str(path)
        return tokenizer

    @classmethod
    def byte_level(cls, sequence_length=DEFAULT_SEQUENCE_LENGTH, pad_token=END_TOKEN):
        """Builds a character-level tokenizer that needs no vocabulary file.

        Its 514 tokens are the 256 byte symbols, their 256 word-final variants
        and the start and end tokens, with no merges: every word becomes one
        token per UTF-8 byte. Random test models use it, fully offline.

        Args:
            sequence_length: length of the rows returned by `__call__`.
            pad_token: token filling rows after the end token.

        Returns:
            A `CLIPTokenizer` without merges.
        """
        tokenizer = cls(
            byte_level_vocabulary(), [], sequence_length=sequence_length, pad_token=pad_token
        )
        tokenizer._vocabulary_source = VOCABULARY_BYTE_LEVEL
        return tokenizer

    @property
    def vocabulary_size(self):
        """Number of ids, placeholder tokens included (the embedding table's rows)."""
        return len(self._tokens)

    @property
    def placeholder_tokens(self):
        """Dict placeholder -> its ids, in the order they were added."""
        return {placeholder: list(ids) for placeholder, ids in self._placeholder_ids.items()}

    def token_to_id(self, token):
        """Returns the id of `token` ("cat</w>", "<cat-toy>_1"), or None if unknown."""
        return self._token_ids.get(token)

    def id_to_token(self, token_id):
        """Returns the token string of `token_id`.

        Raises:
            ValueError: `token_id` is not an id of this tokenizer.
        """
        if isinstance(token_id, (bool, np.bool_)) or not 0 <= token_id < len(self._tokens):
            raise ValueError(
                f"`token_id` must be an id between 0 and {len(self._tokens) - 1}. "
                f"Received: token_id={token_id!r}"
            )
        return self._tokens[int(token_id)]

    def tokenize_words(self, text):
        """Returns the ids of `text`, without start and end tokens.

        Useful for initializer words that CLIP splits into several tokens
        ("cat-toy"), whose embeddings a caller may average.

        Args:
            text: a string; its placeholders expand to all their ids.

        Returns:
            A list of ids.

        Raises:
            ValueError: a piece of the text is not in the vocabulary (only
                with a custom vocabulary lacking some byte symbols).
        """
        if not isinstance(text, str):
            raise TypeError(f"`text` must be a string. Received: text={text!r}")
        ids = []
        for segment, is_placeholder in self._split_placeholders(text):
            if is_placeholder:
                ids.extend(self._placeholder_ids[segment])
                continue
            for word in self._word_pattern.findall(_clean(segment)):
                ids.extend(self._word_ids(word))
        return ids

    def encode(self, text):
        """Returns the ids of `text` between the start and end tokens.

        No padding and no truncation: the list may be longer than
        `sequence_length`.
        """
        return [self.start_token_id] + self.tokenize_words(text) + [self.end_token_id]

    def __call__(self, texts, truncate=True):
        """Tokenizes prompts into fixed-length rows for the text encoder.

        Args:
            texts: a prompt or a list of prompts.
            truncate: what to do with a prompt longer than `sequence_length`
                (start and end tokens included): True keeps its first tokens
                and the end token, with a warning; False raises.

        Returns:
            int32 array of shape `(batch, sequence_length)`: start token,
            tokens, end token, then `pad_token_id`.

        Raises:
            ValueError: a prompt is too long and `truncate` is False.
            TypeError: `texts` is not a string nor a list of strings.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise TypeError(
                f"`texts` must be a string or a list of strings. Received: texts={texts!r}"
            )
        rows = np.full((len(texts), self.sequence_length), self.pad_token_id, dtype="int32")
        truncated_lengths = []
        for row, text in enumerate(texts):
            ids = self.encode(text)
            if len(ids) > self.sequence_length:
                if not truncate:
                    raise InvalidInputError(
                        f"A prompt has {len(ids)} tokens (start and end tokens included), "
                        f"more than sequence_length={self.sequence_length}. Shorten it, or "
                        f"pass truncate=True to cut it. Received: text={text!r}"
                    )
                truncated_lengths.append(len(ids))
                ids = ids[: self.sequence_length - 1] + [self.end_token_id]
            rows[row, : len(ids)] = ids
        if truncated_lengths:
            warnings.warn(
                f"{len(truncated_lengths)} of {len(texts)} prompts have more than "
                f"sequence_length={self.sequence_length} tokens (up to "
                f"{max(truncated_lengths)}, start and end tokens included); their end "
                "is cut off and the end token kept. Pass truncate=False to raise instead.",
                stacklevel=2,
            )
        return rows

    def decode(self, token_ids):
        """Returns the text of `token_ids`, lowercased and cleaned as tokenized.

        Start and end tokens are dropped, and so is padding after the end
        token. A placeholder's ids, in order, come back as the placeholder
        string once. Words are separated by spaces, also before punctuation
        ("a cat , a dog"), as CLIP stores no spacing.

        Args:
            token_ids: a 1-D sequence of ids (list, numpy or backend array).

        Returns:
            A string.

        Raises:
            ValueError: `token_ids` is not 1-D or holds an unknown id.
        """
        ids = np.asarray(token_ids)
        if ids.ndim != 1:
            raise ValueError(
                f"`token_ids` must be one sequence (1-D). Received: shape {ids.shape}"
            )
        parts = []
        word_bytes = bytearray()
        previous_owner = None
        after_end = False
        for token_id in ids.tolist():
            owner = self._placeholder_of_id.get(token_id)
            if token_id == self.end_token_id:
                after_end = True
            elif token_id == self.start_token_id or (after_end and token_id == self.pad_token_id):
                pass
            elif owner is not None:
                placeholder, position = owner
                # The following ids of a placeholder continue the same one.
                if position == 0 or previous_owner != (placeholder, position - 1):
                    parts.append(word_bytes.decode("utf-8", errors="replace"))
                    word_bytes = bytearray()
                    parts.append(placeholder + " ")
            else:
                word_bytes += self._token_bytes(self.id_to_token(token_id))
            previous_owner = owner
        parts.append(word_bytes.decode("utf-8", errors="replace"))
        return "".join(parts).strip()

    def add_placeholder_tokens(self, placeholder, num_vectors=1):
        """Registers a placeholder with `num_vectors` new ids at the end of the vocabulary.

        Its tokens are named as in diffusers: "<cat-toy>", "<cat-toy>_1", ...
        Wherever the placeholder appears in a text, it expands to all its ids,
        in order.

        Args:
            placeholder: the string to type in prompts, e.g. "<cat-toy>"; no
                whitespace, not a vocabulary token.
            num_vectors: number of ids (embedding vectors) it stands for.

        Returns:
            The list of its new ids.

        Raises:
            ValueError: `placeholder` is empty, contains whitespace, is (or
                differs only in case from) a vocabulary token or another
                placeholder, or `num_vectors` < 1.
            TypeError: `placeholder` is not a string.
        """
        if not isinstance(placeholder, str):
            raise TypeError(
                f"`placeholder` must be a string. Received: placeholder={placeholder!r}"
            )
        if isinstance(num_vectors, bool) or not isinstance(num_vectors, int) or num_vectors < 1:
            raise InvalidInputError(
                f"`num_vectors` must be an integer >= 1. Received: num_vectors={num_vectors!r}"
            )
        if not placeholder:
            raise InvalidInputError("A placeholder must not be empty. Received: placeholder=''")
        if any(character.isspace() for character in placeholder):
            raise InvalidInputError(
                "A placeholder must not contain whitespace: prompts could not tell "
                f"it from separate words. Received: placeholder={placeholder!r}"
            )
        if placeholder in self._placeholder_ids:
            raise InvalidInputError(
                f"The placeholder {placeholder!r} was already added, with ids "
                f"{self._placeholder_ids[placeholder]}. Received: placeholder={placeholder!r}"
            )
        for other in self._placeholder_ids:
            if other.lower() == placeholder.lower():
                raise InvalidInputError(
                    f"A placeholder must not differ only in case from another one "
                    f"({other!r}): prompts would silently pick one. "
                    f"Received: placeholder={placeholder!r}"
                )
        lowered = placeholder.lower()
        for token in (placeholder, lowered, lowered + END_OF_WORD):
            if token in self.vocabulary:
                raise InvalidInputError(
                    f"A placeholder must not be a vocabulary token: {token!r} already "
                    "is one, and the placeholder would capture that word in prompts. "
                    f"Pick a distinctive string such as '<my-concept>'. "
                    f"Received: placeholder={placeholder!r}"
                )
        tokens = [placeholder] + [f"{placeholder}_{index}" for index in range(1, num_vectors)]
        for token in tokens:
            if token in self._token_ids:
                raise InvalidInputError(
                    f"The placeholder's token {token!r} already exists (a token of "
                    f"another placeholder). Received: placeholder={placeholder!r}, "
                    f"num_vectors={num_vectors}"
                )

        ids = list(range(len(self._tokens), len(self._tokens) + num_vectors))
        for position, (token, token_id) in enumerate(zip(tokens, ids)):
            self._token_ids[token] = token_id
            self._tokens.append(token)
            self._placeholder_of_id[token_id] = (placeholder, position)
        self._placeholder_ids[placeholder] = ids
        # Longest first, so that "<ab>" is not read as "<a>" followed by "b>".
        alternatives = sorted(self._placeholder_ids, key=len, reverse=True)
        self._placeholder_pattern = regex.compile(
            "(" + "|".join(regex.escape(p) for p in alternatives) + ")"
        )
        return list(ids)

    def get_config(self):
        """Returns a JSON-serialisable dict that `from_config` rebuilds this tokenizer from.

        The vocabulary is named, not copied, when it came from
        `from_vocabulary_file` ("clip_file" and the path given, None for the
        Keras cache) or `byte_level` ("byte_level"); a tokenizer built from
        in-memory data ("inline") carries its `vocabulary` and `merges`.
        Placeholders are listed in order, so that they get the same ids again.
        """
        config = {
            "sequence_length": self.sequence_length,
            "pad_token": self.pad_token,
            "start_token": self.start_token,
            "end_token": self.end_token,
            "vocabulary_source": self._vocabulary_source,
            "vocabulary_file": self._vocabulary_file,
            "placeholder_tokens": [
                [placeholder, len(ids)] for placeholder, ids in self._placeholder_ids.items()
            ],
        }
        if self._vocabulary_source == VOCABULARY_INLINE:
            config["vocabulary"] = dict(self.vocabulary)
            config["merges"] = list(self.merges)
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuilds a tokenizer from `get_config()`'s dict.

        Raises:
            ValueError: unknown `vocabulary_source`.
            VocabularyNotFoundError: a "clip_file" vocabulary cannot be found.
        """
        config = dict(config)
        source = config.pop("vocabulary_source")
        vocabulary_file = config.pop("vocabulary_file", None)
        placeholders = config.pop("placeholder_tokens", [])
        if source == VOCABULARY_FROM_FILE:
            vocabulary, merges = load_clip_vocabulary(get_clip_vocabulary_path(vocabulary_file))
        elif source == VOCABULARY_BYTE_LEVEL:
            vocabulary, merges = byte_level_vocabulary(), []
        elif source == VOCABULARY_INLINE:
            vocabulary, merges = config.pop("vocabulary"), config.pop("merges")
        else:
            raise ValueError(
                f"`vocabulary_source` must be one of {VOCABULARY_FROM_FILE!r}, "
                f"{VOCABULARY_BYTE_LEVEL!r}, {VOCABULARY_INLINE!r}. "
                f"Received: vocabulary_source={source!r}"
            )
        tokenizer = cls(vocabulary, merges, **config)
        tokenizer._vocabulary_source = source
        tokenizer._vocabulary_file = vocabulary_file
        for placeholder, num_vectors in placeholders:
            tokenizer.add_placeholder_tokens(placeholder, num_vectors)
        return tokenizer

    def _split_placeholders(self, text):
        """Yields (segment, is_placeholder) pairs covering `text` in order."""
        if self._placeholder_pattern is None:
            yield text, False
            return
        # With one capturing group, split alternates text and placeholders.
        for index, segment in enumerate(self._placeholder_pattern.split(text)):
            if index % 2:
                yield segment, True
            elif segment:
                yield segment, False

    def _word_ids(self, word):
        if word in self._special_tokens:
            return [self._token_ids[self._special_tokens[word]]]
        ids = []
        for piece in self._bpe("".join(self._byte_symbols[b] for b in word.encode("utf-8"))):
            token_id = self.vocabulary.get(piece)
            if token_id is None:
                raise InvalidInputError(
                    f"The piece {piece!r} of the word {word!r} is not in the vocabulary; "
                    "a CLIP vocabulary holds every byte symbol and its '</w>' variant. "
                    f"Received: a vocabulary of {len(self.vocabulary)} tokens"
                )
            ids.append(token_id)
        return ids

    def _bpe(self, symbols):
        """Splits a word, written in byte symbols, into its byte-pair pieces."""
        cached = self._bpe_cache.get(symbols)
        if cached is not None:
            return cached
        pieces = list(symbols[:-1]) + [symbols[-1] + END_OF_WORD]
        while len(pieces) > 1:
            pairs = zip(pieces, pieces[1:])
            best = min(pairs, key=lambda pair: self._merge_ranks.get(pair, float("inf")))
            if best not in self._merge_ranks:
                break
            merged, index = [], 0
            while index < len(pieces):
                if index + 1 < len(pieces) and (pieces[index], pieces[index + 1]) == best:
                    merged.append(pieces[index] + pieces[index + 1])
                    index += 2
                else:
                    merged.append(pieces[index])
                    index += 1
            pieces = merged
        if len(self._bpe_cache) >= BPE_CACHE_SIZE:
            self._bpe_cache.clear()
        self._bpe_cache[symbols] = pieces
        return pieces

    def _token_bytes(self, token):
        """The UTF-8 bytes a vocabulary token stands for; "</w>" becomes a space."""
        ends_word = token.endswith(END_OF_WORD)
        if ends_word:
            token = token[: -len(END_OF_WORD)]
        data = bytearray()
        for character in token:
            byte = self._symbol_bytes.get(character)
            data += character.encode("utf-8") if byte is None else bytes([byte])
        if ends_word:
            data += b" "
        return data


def _clean(text):
    """CLIP's text cleaning: ftfy (if installed), HTML entities, whitespace, lowercase."""
    if ftfy is not None:
        text = ftfy.fix_text(text)
    # Twice, as OpenAI does, for doubly escaped text ("&amp;amp;").
    text = html.unescape(html.unescape(text))
    return regex.sub(r"\s+", " ", text).strip().lower()


def _check_vocabulary(vocabulary):
    if sorted(vocabulary.values()) != list(range(len(vocabulary))):
        raise InvalidInputError(
            "The vocabulary's ids must be 0..n-1, each used once, so that they index "
            f"an embedding table. Received: {len(vocabulary)} tokens with ids from "
            f"{min(vocabulary.values(), default=None)} to {max(vocabulary.values(), default=None)}"
        )


def _merge_ranks(merges, vocabulary):
    ranks = {}
    for rank, merge in enumerate(merges):
        pair = tuple(merge.split(" ")) if isinstance(merge, str) else ()
        if len(pair) != 2 or not all(pair) or pair[0] + pair[1] not in vocabulary:
            raise InvalidInputError(
                "Each merge must be two pieces separated by one space whose "
                f"concatenation is a vocabulary token. Received: merges[{rank}]={merge!r}"
            )
        ranks.setdefault(pair, rank)
    return ranks
