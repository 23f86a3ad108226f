"""One textual-inversion embedding: learned token vectors and where they came from."""

import numpy as np

from studio.errors import InvalidInputError

# Embeddings for one CLIP text encoder (SD 1.x: 768 wide, SD 2.x: 1024).
ARCHITECTURE_SD = "sd"
# SD-XL embeddings hold vectors for its two text encoders, by encoder name.
ARCHITECTURE_SDXL = "sd-xl"
SDXL_ENCODERS = ("clip_l", "clip_g")
# SD-XL files do not name their token; the studio's record it in this metadata key.
SDXL_PLACEHOLDER_KEY = "studio.placeholder"
# SD3's CLIP-L and CLIP-G are SD-XL's encoders, so its embeddings have SD-XL's
# layout; the studio's files record the family they were trained on here
# ("sd3"; absent: SD-XL), which kohya's ModelSpec metadata names.
BASE_FAMILY_KEY = "studio.base_family"
ARCHITECTURES = (ARCHITECTURE_SD, ARCHITECTURE_SDXL)
# dtypes of the values as stored; bfloat16 values are held as float32.
DTYPES = ("float32", "float16", "bfloat16")


class TextualInversionEmbedding:
    """Learned token vectors for a CLIP text encoder, with their provenance.

    A file may hold several placeholders (diffusers files can); each maps to
    `num_vectors` rows of the text encoder's width. SD-XL files are
    represented too (for inspection): their vectors are keyed by encoder,
    "clip_l" and "clip_g", and they cannot be loaded into SD 1.x/2.x.

    Args:
        vectors: dict placeholder -> float array `(num_vectors, width)` (a
            1-D array is one vector); for `architecture="sd-xl"`, dict
            "clip_l"/"clip_g" -> array.
        base_model: the preset name the embedding was trained on ("sd-v1").
        base_model_hash: the sha256 of that preset's text-encoder weights
            (the published file's, for `sd-v1` / `sd-v2`; older files).
        initializer: the word(s) the vectors started from.
        steps: training steps, or None when unknown.
        architecture: "sd" (SD 1.x/2.x) or "sd-xl".
        dtype: how the values were stored: "float32", "float16" or
            "bfloat16"; None infers it from the arrays. float16 arrays stay
            float16 (their exact precision); bfloat16 values are float32
            arrays.
        format: the file format it was read from ("native", "diffusers",
            "kohya", "a1111", "sd-xl"), or None when made in memory.
        metadata: other string metadata, as read from the file.
        token_table_hash: the base model's `token_table_hash` (the sha256
            of its text encoder's token table), "" when unknown (files
            written before it, or by other tools).

    Example:

    ```python
    embedding = TextualInversionEmbedding(
        {"<cat-toy>": np.zeros((2, 768), "float32")},
        base_model="sd-v1", initializer="toy", steps=3000,
    )
    embedding.num_vectors  # {"<cat-toy>": 2}
    ```
    """

    def __init__(
        self,
        vectors,
        base_model="",
        base_model_hash="",
        initializer="",
        steps=None,
        architecture=ARCHITECTURE_SD,
        dtype=None,
        format=None,
        metadata=None,
        token_table_hash="",
    ):
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"`architecture` must be one of {ARCHITECTURES}. "
                f"Received: architecture={architecture!r}"
            )
        vectors = _check_vectors(vectors, architecture)
        if dtype is None:
            dtype = _infer_dtype(vectors.values())
        if dtype not in DTYPES:
            raise ValueError(f"`dtype` must be one of {DTYPES}. Received: dtype={dtype!r}")
        # One array dtype for all: float16 keeps float16 values exact, the
        # others are held as float32 (bfloat16 widens to it exactly).
        array_dtype = np.float16 if dtype == "float16" else np.float32
        self.vectors = {
            key: value.astype(array_dtype, copy=False) for key, value in vectors.items()
        }
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0
        ):
            raise ValueError(
                f"`steps` must be a non-negative int or None. Received: steps={steps!r}"
            )
        self.base_model = str(base_model or "")
        self.base_model_hash = str(base_model_hash or "")
        self.token_table_hash = str(token_table_hash or "")
        self.initializer = str(initializer or "")
        self.steps = None if steps is None else int(steps)
        self.architecture = architecture
        self.dtype = dtype
        self.format = format
        self.metadata = {str(key): str(value) for key, value in (metadata or {}).items()}

    @property
    def placeholders(self):
        """The placeholder tokens (for SD-XL: the encoder names)."""
        return list(self.vectors)

    @property
    def num_vectors(self):
        """Dict placeholder -> its number of vectors."""
        return {key: value.shape[0] for key, value in self.vectors.items()}

    @property
    def text_encoder_width(self):
        """The width of the vectors (768 for SD 1.x, 1024 for SD 2.x); for
        SD-XL, the sum of both encoders' widths, as A1111 reports it."""
        if self.architecture == ARCHITECTURE_SDXL:
            return sum(value.shape[1] for value in self.vectors.values())
        return next(iter(self.vectors.values())).shape[1]

    def vector_norms(self):
        """Dict placeholder -> L2 norm of each of its vectors (float64)."""
        return {
            key: np.linalg.norm(value.astype(np.float64), axis=-1)
            for key, value in self.vectors.items()
        }

    def select(self, placeholder):
        """A copy holding only `placeholder` (to save it alone, e.g. for A1111).

        Raises:
            ValueError: `placeholder` is not in the embedding.
        """
        if self.architecture != ARCHITECTURE_SD or placeholder not in self.vectors:
            raise InvalidInputError(
                f"`placeholder` must be one of {self.placeholders}. "
                f"Received: placeholder={placeholder!r}"
            )
        return self._replace(vectors={placeholder: self.vectors[placeholder]})

    def renamed(self, placeholder):
        """A copy whose only placeholder is called `placeholder`.

        An SD-XL embedding (whose vectors are keyed by encoder) records
        its token in its metadata (`"studio.placeholder"`) instead.

        Raises:
            ValueError: the embedding holds several placeholders, or
                `placeholder` is empty.
        """
        if self.architecture == ARCHITECTURE_SDXL and isinstance(placeholder, str) and (
            placeholder.strip()
        ):
            return self._replace(metadata={**self.metadata, SDXL_PLACEHOLDER_KEY: placeholder})
        if self.architecture != ARCHITECTURE_SD or len(self.vectors) != 1:
            raise InvalidInputError(
                "Only an embedding with one placeholder can be renamed; use "
                f"`select` first. Received: placeholders {self.placeholders}"
            )
        if not isinstance(placeholder, str) or not placeholder.strip():
            raise InvalidInputError(
                f"`placeholder` must be a non-empty string. Received: placeholder={placeholder!r}"
            )
        (vectors,) = self.vectors.values()
        return self._replace(vectors={placeholder: vectors})

    def get_config(self):
        """Everything but the vectors, as JSON-serialisable data."""
        return {
            "base_model": self.base_model,
            "base_model_hash": self.base_model_hash,
            "token_table_hash": self.token_table_hash,
            "initializer": self.initializer,
            "steps": self.steps,
            "architecture": self.architecture,
            "dtype": self.dtype,
            "format": self.format,
            "metadata": dict(self.metadata),
        }

    def _replace(self, **changes):
        config = {"vectors": self.vectors, **self.get_config(), **changes}
        return type(self)(**config)

    def __repr__(self):
        shapes = ", ".join(f"{key!r}: {tuple(value.shape)}" for key, value in self.vectors.items())
        return (
            f"TextualInversionEmbedding({{{shapes}}}, dtype={self.dtype!r}, "
            f"format={self.format!r}, base_model={self.base_model!r})"
        )


def _check_vectors(vectors, architecture):
    if not isinstance(vectors, dict) or not vectors:
        raise ValueError(
            "`vectors` must be a non-empty dict placeholder -> array. "
            f"Received: {type(vectors).__name__} {vectors!r:.200}"
        )
    checked = {}
    for key, value in vectors.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"Placeholders must be non-empty strings. Received: {key!r}")
        array = np.asarray(value)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or 0 in array.shape:
            raise ValueError(
                f"Vectors must have shape (num_vectors, width). Received: {key!r} of "
                f"shape {np.shape(value)}"
            )
        if array.dtype not in (np.float16, np.float32):
            if not np.issubdtype(array.dtype, np.floating):
                raise ValueError(
                    f"Vectors must be floats. Received: {key!r} of dtype {array.dtype}"
                )
            array = array.astype(np.float32)
        checked[key] = array
    if architecture == ARCHITECTURE_SDXL:
        if sorted(checked) != sorted(SDXL_ENCODERS) or len(
            {array.shape[0] for array in checked.values()}
        ) != 1:
            raise ValueError(
                f"SD-XL vectors must be keyed {SDXL_ENCODERS} with the same number "
                f"of vectors. Received: { {k: v.shape for k, v in checked.items()} }"
            )
    elif len({array.shape[1] for array in checked.values()}) != 1:
        raise ValueError(
            "All placeholders' vectors must have the same width (one text encoder). "
            f"Received: { {k: v.shape for k, v in checked.items()} }"
        )
    return checked


def _infer_dtype(arrays):
    return "float16" if all(array.dtype == np.float16 for array in arrays) else "float32"
