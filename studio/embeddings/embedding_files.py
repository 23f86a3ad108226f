"""Textual-inversion embedding files: ours, diffusers', kohya's and AUTOMATIC1111's.

Formats `save_embedding` writes (`load_embedding` recognises each by its
content, whatever the file is called):

  * "native": `.safetensors` holding `{placeholder: float32 (n, width)}`,
    with string metadata under "studio." (base model and its hash, width,
    placeholder, initializer, vectors, steps, creator, format version).
    The tensors are laid out as diffusers' `learned_embeds.safetensors`,
    so diffusers' `load_textual_inversion` reads the file as it is.
  * "diffusers": the same `{placeholder: (n, width)}` as `.safetensors`,
    or pickled as `learned_embeds.bin`, exactly as diffusers writes them:
    without our metadata.
  * "kohya": `{"emb_params": (n, width)}` as `.safetensors` (AUTOMATIC1111
    reads these too) or `.pt`, float16 or float32, with the ModelSpec
    metadata kohya's sd-scripts write. One placeholder per file, which the
    layout does not name (tools use the file's name): `.safetensors` keep
    ours in the "studio." metadata, `.pt` cannot (an extra key would break
    AUTOMATIC1111's loader), so name those files after the token.
  * "a1111": AUTOMATIC1111's `.pt`: `{"string_to_token": {"*": 265},
    "string_to_param": {"*": (n, width)}, "name", "step", "sd_checkpoint",
    "sd_checkpoint_name"}`, plus our metadata under "studio_metadata"
    (loaders ignore keys they do not know).

SD-XL files, `{"clip_l": (n, 768), "clip_g": (n, 1280)}`, are read as
"native" (ours), "kohya" (with kohya's ModelSpec metadata) or "sd-xl"
(other tools'); `save_embedding` writes SD-XL embeddings as "native" or
"kohya" (`studio.embeddings.sdxl_embedding_file`). SD 1.x/2.x cannot load
them, nor SD-XL the others.

PyTorch files are read without PyTorch and without running pickle code
(`torch_pickle_reader`), and written without PyTorch (`torch_pickle_writer`).
Every file is written atomically.
"""

import datetime
import json
import os
import re

import numpy as np
import safetensors.numpy

from studio import __version__
from studio.errors import InvalidInputError
from studio.files.atomic_write import write_file_atomically
from studio.embeddings.embedding_format_error import EmbeddingFormatError
from studio.tensor_files.safetensors_reader import looks_like_safetensors, read_safetensors
from studio.tensor_files.stored_tensor import StoredTensor
from studio.embeddings.textual_inversion_embedding import ARCHITECTURE_SD
from studio.embeddings.textual_inversion_embedding import ARCHITECTURE_SDXL
from studio.embeddings.textual_inversion_embedding import DTYPES
from studio.embeddings.textual_inversion_embedding import SDXL_ENCODERS
from studio.embeddings.textual_inversion_embedding import TextualInversionEmbedding
from studio.tensor_files.torch_pickle_reader import is_torch_file, load_torch_pickle
from studio.tensor_files.torch_pickle_writer import encode_torch_file

FORMATS = ("native", "diffusers", "kohya", "a1111")
FORMAT_SDXL = "sd-xl"
# The extensions each format may be written with; the first is the usual one.
FORMAT_EXTENSIONS = {
    "native": (".safetensors",),
    "diffusers": (".safetensors", ".bin"),
    "kohya": (".safetensors", ".pt"),
    "a1111": (".pt", ".bin"),
}
SAVE_DTYPES = ("float32", "float16")
# Largest finite float16; larger values would be saved as infinity.
FLOAT16_MAX = 65504.0

# Our metadata keys. Bump the version when their meaning changes.
FORMAT_VERSION = "1"
METADATA_PREFIX = "studio."
KEY_FORMAT_VERSION = "studio.format_version"
KEY_CREATED_BY = "studio.created_by"
KEY_BASE_MODEL = "studio.base_model"
KEY_BASE_MODEL_HASH = "studio.base_model_hash"
KEY_TOKEN_TABLE_HASH = "studio.token_table_hash"
KEY_TEXT_ENCODER_WIDTH = "studio.text_encoder_width"
KEY_PLACEHOLDER = "studio.placeholder"  # One placeholder: the string.
KEY_PLACEHOLDERS = "studio.placeholders"  # Several: a JSON list.
KEY_NUM_VECTORS = "studio.num_vectors"  # An int, or a JSON list of ints for several.
KEY_INITIALIZER = "studio.initializer"
KEY_STEPS = "studio.steps"
# What `safetensors.torch.save_file` and diffusers write; harmless elsewhere.
SAFETENSORS_FORMAT_METADATA = {"format": "pt"}

KOHYA_KEY = "emb_params"
A1111_PARAMETERS_KEY = "string_to_param"
A1111_STAR = "*"
# A1111 writes the CLIP id of "*", the placeholder of the original
# textual-inversion code; loaders ignore it.
A1111_STAR_TOKEN_ID = 265
# A1111 shows checkpoints by the first 10 hex digits of their sha256.
A1111_SHORT_HASH_LENGTH = 10
A1111_METADATA_KEY = "studio_metadata"
A1111_INFO_KEYS = ("sd_checkpoint", "sd_checkpoint_name")

# Stability AI's ModelSpec, as kohya's sd-scripts write it for embeddings.
MODELSPEC_VERSION = "1.0.1"
MODELSPEC_IMPLEMENTATION = "https://github.com/Stability-AI/generative-models"
MODELSPEC_ARCHITECTURES = {768: "stable-diffusion-v1", 1024: "stable-diffusion-v2-512"}
MODELSPEC_UNKNOWN_ARCHITECTURE = "keras-sd-studio"
MODELSPEC_ADAPTER = "textual-inversion"
MODELSPEC_RESOLUTION = "512x512"
MODELSPEC_PREDICTION_TYPE = "epsilon"

# Tensors named like module weights make a model or a LoRA, not an embedding.
WEIGHT_NAME_SUFFIXES = (".weight", ".bias", ".alpha")
# How many tensors an error message lists.
MAX_LISTED_TENSORS = 8
# The most tensor data a PyTorch embedding file may declare. The largest
# real ones (SD-XL, 75 vectors of 768 + 1280 float32) hold under 1 MB; the
# limit keeps a small compressed file from expanding into gigabytes.
MAX_EMBEDDING_DATA_BYTES = 64 * 2**20


def load_embedding(path):
    """Reads an embedding file of any supported format, found by its content.

    Args:
        path: a `.safetensors`, `.pt` or `.bin` file (native, diffusers,
            kohya, A1111 or SD-XL layout).

    Returns:
        A `TextualInversionEmbedding`; `.format` names the layout found and
        `.dtype` how the values were stored (float16 values stay float16).

    Raises:
        FileNotFoundError: there is no such file.
        EmbeddingFormatError (a ValueError): the file is not an embedding,
            is truncated, or is a pickle that names code to run.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No embedding file at {path}. Received: path={path!r}")
    name = _file_stem(path)
    if looks_like_safetensors(path):
        tensors, metadata = read_safetensors(path)
        return _from_tensors(path, tensors, metadata, name)
    if is_torch_file(path):
        return _from_pickle(
            path, load_torch_pickle(path, max_data_bytes=MAX_EMBEDDING_DATA_BYTES), name
        )
    with open(path, "rb") as file:
        start = file.read(8)
    raise EmbeddingFormatError(
        f"{path} is neither a safetensors file nor a PyTorch file (.pt/.bin), so "
        f"it holds no embedding we can read. Received: first bytes {start!r}"
    )


def save_embedding(embedding, path, format="native", dtype=None):
    """Writes `embedding` atomically in one of `FORMATS`.

    Args:
        embedding: a `TextualInversionEmbedding` (SD 1.x/2.x; SD-XL ones
            go to `save_sdxl_embedding`: "native" or "kohya").
        path: the file; its extension must suit the format (see
            `FORMAT_EXTENSIONS`).
        format: "native", "diffusers", "kohya" or "a1111".
        dtype: "float32" or "float16"; None keeps float16 embeddings float16
            and writes the rest as float32. "native" is always float32.

    Returns:
        `path`.

    Raises:
        ValueError: unknown format or dtype, an extension the format does
            not use, several placeholders for a format
            holding one (kohya, a1111), or values too large for float16.
    """
    if not isinstance(embedding, TextualInversionEmbedding):
        raise ValueError(
            "`embedding` must be a TextualInversionEmbedding. "
            f"Received: {type(embedding).__name__}"
        )
    if format not in FORMATS:
        raise InvalidInputError(f"`format` must be one of {FORMATS}. Received: format={format!r}")
    path = os.fspath(path)
    if embedding.architecture == ARCHITECTURE_SDXL:
        from studio.embeddings.sdxl_embedding_file import save_sdxl_embedding

        return save_sdxl_embedding(embedding, path, format=format, dtype=dtype)
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMAT_EXTENSIONS[format]:
        hint = ""
        if format == "a1111":
            hint = " (AUTOMATIC1111 also reads kohya `.safetensors` files)"
        raise InvalidInputError(
            f"A {format} embedding file must end with one of {FORMAT_EXTENSIONS[format]}"
            f"{hint}. Received: path={path!r}"
        )
    if format in ("kohya", "a1111") and len(embedding.placeholders) != 1:
        raise InvalidInputError(
            f"A {format} file holds one placeholder; save each with "
            "`embedding.select(placeholder)`. "
            f"Received: placeholders {embedding.placeholders}"
        )
    array_dtype = _save_dtype(embedding, format, dtype)
    vectors = {key: _cast(key, value, array_dtype) for key, value in embedding.vectors.items()}
    (placeholder, *_) = vectors
    safetensors_file = extension == ".safetensors"
    if format == "native":
        data = safetensors.numpy.save(vectors, metadata=_studio_metadata(embedding))
    elif format == "diffusers" and safetensors_file:
        # Exactly what diffusers writes: a file without our metadata is
        # what "diffusers" means here (a `.bin` could not hold it anyway).
        data = safetensors.numpy.save(vectors, metadata=SAFETENSORS_FORMAT_METADATA)
    elif format == "diffusers":
        data = encode_torch_file(vectors, _archive_name(path))
    elif format == "kohya" and safetensors_file:
        metadata = {**_studio_metadata(embedding), **_kohya_metadata(embedding)}
        data = safetensors.numpy.save({KOHYA_KEY: vectors[placeholder]}, metadata=metadata)
    elif format == "kohya":
        data = encode_torch_file({KOHYA_KEY: vectors[placeholder]}, _archive_name(path))
    else:
        a1111 = _a1111_dict(embedding, vectors[placeholder])
        data = encode_torch_file(a1111, _archive_name(path))
    return write_file_atomically(path, data)


def convert_embedding(source, destination, format="native", dtype=None, placeholder=None):
    """Reads `source` and writes it to `destination` in `format`.

    Args:
        source: an embedding file of any supported format.
        destination: the file to write.
        format: one of `FORMATS`.
        dtype: "float32", "float16", or None (see `save_embedding`).
        placeholder: a new name for the (single) placeholder, or None.
            Kohya files do not name their token, so one read from them is
            called after the file unless the file carries our metadata.

    Returns:
        The `TextualInversionEmbedding` written.
    """
    embedding = load_embedding(source)
    if placeholder is not None:
        embedding = embedding.renamed(placeholder)
    save_embedding(embedding, destination, format=format, dtype=dtype)
    return embedding


# --- Reading -------------------------------------------------------------------


def _file_stem(path):
    name = os.path.basename(path)
    return os.path.splitext(name)[0] or name


def _archive_name(path):
    """The folder inside a PyTorch zip: the file's stem, as torch.save names it,
    in characters any zip reader accepts."""
    return re.sub(r"[^\w.-]", "_", _file_stem(path)) or "archive"


def _from_pickle(path, obj, name):
    if not isinstance(obj, dict):
        raise EmbeddingFormatError(
            f"{path} is a PyTorch file but not an embedding: it holds a "
            f"{type(obj).__name__}, not a dict of tensors."
        )
    if A1111_PARAMETERS_KEY in obj:
        return _from_a1111(path, obj, name)
    return _from_tensors(path, obj, {}, name)


def _from_a1111(path, obj, name):
    parameters = obj[A1111_PARAMETERS_KEY]
    if not (
        isinstance(parameters, dict)
        and len(parameters) == 1
        and isinstance(next(iter(parameters.values())), StoredTensor)
    ):
        raise EmbeddingFormatError(
            f"{path}: an A1111 embedding's `string_to_param` must hold one tensor. "
            f"Received: {_describe(parameters)}"
        )
    stored = next(iter(parameters.values()))
    _check_vector_shape(path, A1111_PARAMETERS_KEY, stored)
    metadata = {key: str(obj[key]) for key in A1111_INFO_KEYS if obj.get(key) is not None}
    ours = obj.get(A1111_METADATA_KEY)
    if isinstance(ours, dict):
        metadata.update(
            {k: v for k, v in ours.items() if isinstance(k, str) and isinstance(v, str)}
        )
    fields = _studio_fields(metadata)
    if fields["steps"] is None and type(obj.get("step")) is int and obj["step"] >= 0:
        fields["steps"] = obj["step"]
    placeholder = obj.get("name") if isinstance(obj.get("name"), str) and obj["name"] else name
    return _embedding({placeholder: stored}, "a1111", metadata, fields)


def _from_tensors(path, tensors, metadata, name):
    if not tensors:
        raise EmbeddingFormatError(f"{path} holds no tensors, so no embedding.")
    if not all(isinstance(value, StoredTensor) for value in tensors.values()):
        _not_an_embedding(path, tensors, "it holds entries that are not tensors")
    fields = _studio_fields(metadata)
    keys = sorted(tensors)
    if keys == sorted(SDXL_ENCODERS):
        for key, stored in tensors.items():
            _check_vector_shape(path, key, stored)
        return _embedding(tensors, _sdxl_format(metadata), metadata, fields, ARCHITECTURE_SDXL)
    if keys == [KOHYA_KEY]:
        _check_vector_shape(path, KOHYA_KEY, tensors[KOHYA_KEY])
        placeholder = metadata.get(KEY_PLACEHOLDER) or name
        return _embedding({placeholder: tensors[KOHYA_KEY]}, "kohya", metadata, fields)
    widths = {stored.shape[-1] for stored in tensors.values() if stored.shape}
    if (
        len(widths) == 1
        and all(stored.is_float and len(stored.shape) in (1, 2) for stored in tensors.values())
        and not any(key.endswith(WEIGHT_NAME_SUFFIXES) for key in tensors)
    ):
        for key, stored in tensors.items():
            _check_vector_shape(path, key, stored)
        format = "native" if KEY_FORMAT_VERSION in metadata else "diffusers"
        return _embedding(tensors, format, metadata, fields)
    _not_an_embedding(path, tensors, "its tensors are not token vectors of one width")


def _sdxl_format(metadata):
    """Which writer made a `{clip_l, clip_g}` file: kohya's metadata, ours, or neither."""
    if "modelspec.sai_model_spec" in metadata:
        return "kohya"
    return "native" if KEY_FORMAT_VERSION in metadata else FORMAT_SDXL


def _check_vector_shape(path, key, stored):
    if not (stored.is_float and len(stored.shape) in (1, 2) and 0 not in stored.shape):
        raise EmbeddingFormatError(
            f"{path}: {key!r} must hold float vectors of shape (num_vectors, width). "
            f"Received: shape {list(stored.shape)}, dtype {stored.dtype}"
        )


def _not_an_embedding(path, tensors, reason):
    listed = ", ".join(
        f"{key!r}: {_describe(value)}" for key, value in list(tensors.items())[:MAX_LISTED_TENSORS]
    )
    hidden = len(tensors) - MAX_LISTED_TENSORS
    more = f" and {hidden} more" if hidden > 0 else ""
    raise EmbeddingFormatError(
        f"{path} is not a textual-inversion embedding: {reason}. Expected "
        "{token: (num_vectors, width)} (diffusers), {'emb_params': ...} (kohya), "
        "{'string_to_param': {'*': ...}} (A1111) or {'clip_l', 'clip_g'} (SD-XL). "
        f"Received: {{{listed}{more}}}"
    )


def _describe(value):
    if isinstance(value, StoredTensor):
        return f"{value.dtype} {list(value.shape)}"
    return type(value).__name__


def _studio_fields(metadata):
    steps = metadata.get(KEY_STEPS, "")
    return {
        "base_model": metadata.get(KEY_BASE_MODEL, ""),
        "base_model_hash": metadata.get(KEY_BASE_MODEL_HASH, ""),
        "token_table_hash": metadata.get(KEY_TOKEN_TABLE_HASH, ""),
        "initializer": metadata.get(KEY_INITIALIZER, ""),
        # Foreign or hand-edited metadata may be anything; it stays visible
        # in `metadata` either way.
        "steps": int(steps) if steps.isdigit() else None,
    }


def _embedding(stored_tensors, format, metadata, fields, architecture=ARCHITECTURE_SD):
    dtypes = {stored.dtype for stored in stored_tensors.values()}
    dtype = dtypes.pop() if len(dtypes) == 1 and next(iter(dtypes)) in DTYPES else "float32"
    return TextualInversionEmbedding(
        {key: stored.numpy() for key, stored in stored_tensors.items()},
        architecture=architecture,
        dtype=dtype,
        format=format,
        metadata=metadata,
        **fields,
    )


# --- Writing -------------------------------------------------------------------


def _save_dtype(embedding, format, dtype):
    if dtype is None:
        dtype = "float16" if embedding.dtype == "float16" and format != "native" else "float32"
    if dtype not in SAVE_DTYPES:
        raise InvalidInputError(f"`dtype` must be one of {SAVE_DTYPES}. Received: dtype={dtype!r}")
    if format == "native" and dtype != "float32":
        raise InvalidInputError(
            "Native embedding files are float32; use format='kohya' or "
            f"'diffusers' for float16. Received: dtype={dtype!r}"
        )
    return np.dtype(dtype)


def _cast(placeholder, vectors, dtype):
    if dtype == np.float16:
        largest = float(np.max(np.abs(vectors)))
        if not largest <= FLOAT16_MAX:
            raise InvalidInputError(
                f"{placeholder!r} has values beyond float16's range (±{FLOAT16_MAX:g}); "
                f"save it as float32. Received: largest magnitude {largest:g}"
            )
    return np.ascontiguousarray(vectors, dtype)


def _studio_metadata(embedding):
    """Metadata of ours, after whatever other metadata the embedding carries."""
    metadata = {
        key: value
        for key, value in embedding.metadata.items()
        if not key.startswith(METADATA_PREFIX)
    }
    metadata.update(SAFETENSORS_FORMAT_METADATA)
    metadata[KEY_FORMAT_VERSION] = FORMAT_VERSION
    metadata[KEY_CREATED_BY] = f"keras-sd-studio {__version__}"
    metadata[KEY_TEXT_ENCODER_WIDTH] = str(embedding.text_encoder_width)
    counts = embedding.num_vectors
    if len(counts) == 1:
        ((placeholder, count),) = counts.items()
        metadata[KEY_PLACEHOLDER] = placeholder
        metadata[KEY_NUM_VECTORS] = str(count)
    else:
        metadata[KEY_PLACEHOLDERS] = json.dumps(list(counts), ensure_ascii=False)
        metadata[KEY_NUM_VECTORS] = json.dumps(list(counts.values()))
    optional = {
        KEY_BASE_MODEL: embedding.base_model,
        KEY_BASE_MODEL_HASH: embedding.base_model_hash,
        KEY_TOKEN_TABLE_HASH: embedding.token_table_hash,
        KEY_INITIALIZER: embedding.initializer,
        KEY_STEPS: "" if embedding.steps is None else str(embedding.steps),
    }
    metadata.update({key: value for key, value in optional.items() if value})
    return metadata


def _kohya_metadata(embedding):
    """The ModelSpec keys kohya's train_textual_inversion.py writes."""
    (placeholder,) = embedding.placeholders
    width = embedding.text_encoder_width
    known = width in MODELSPEC_ARCHITECTURES
    architecture = MODELSPEC_ARCHITECTURES.get(width, MODELSPEC_UNKNOWN_ARCHITECTURE)
    metadata = {
        "modelspec.sai_model_spec": MODELSPEC_VERSION,
        "modelspec.architecture": f"{architecture}/{MODELSPEC_ADAPTER}",
        "modelspec.implementation": MODELSPEC_IMPLEMENTATION,
        "modelspec.implementation_version": f"keras-sd-studio/{__version__}",
        "modelspec.title": placeholder,
        "modelspec.trigger_phrase": placeholder,
        "modelspec.date": datetime.datetime.now().replace(microsecond=0).isoformat(),
    }
    if known:
        metadata["modelspec.resolution"] = MODELSPEC_RESOLUTION
        metadata["modelspec.prediction_type"] = MODELSPEC_PREDICTION_TYPE
    return metadata


def _a1111_dict(embedding, vectors):
    (placeholder,) = embedding.placeholders
    checkpoint = embedding.base_model_hash[:A1111_SHORT_HASH_LENGTH] or embedding.metadata.get(
        "sd_checkpoint"
    )
    return {
        "string_to_token": {A1111_STAR: A1111_STAR_TOKEN_ID},
        A1111_PARAMETERS_KEY: {A1111_STAR: vectors},
        "name": placeholder,
        "step": embedding.steps,
        "sd_checkpoint": checkpoint or None,
        "sd_checkpoint_name": embedding.base_model
        or embedding.metadata.get("sd_checkpoint_name"),
        A1111_METADATA_KEY: _studio_metadata(embedding),
    }
