"""SD-XL embedding files: `{"clip_l": (n, 768), "clip_g": (n, 1280)}` safetensors.

The layout kohya's `sdxl_train_textual_inversion.py` writes and
AUTOMATIC1111/Forge, ComfyUI, kohya and diffusers read (diffusers:
`load_textual_inversion(sd["clip_l"], text_encoder=pipe.text_encoder, ...)`,
then `sd["clip_g"]` with `text_encoder_2`). The layout does not name its
token; tools use the file's name, and the studio also records it in the
"studio.placeholder" metadata.

Formats `save_sdxl_embedding` writes (`load_embedding` reads them all):

  * "native": the layout, float32, with the studio's metadata.
  * "kohya": the layout, float32 or float16, with the ModelSpec metadata
    kohya writes (`stable-diffusion-xl-v1-base/textual-inversion`) beside
    ours.

diffusers' own SDXL script writes two files instead (`learned_embeds` for
ViT-L, `learned_embeds_2` for bigG, each `{token: (n, width)}`), which
other tools do not load; `load_diffusers_sdxl_embedding` joins such a pair
into one SD-XL embedding.
"""

import datetime
import os

import numpy as np
import safetensors.numpy

from studio import __version__
from studio.errors import InvalidInputError
from studio.files.atomic_write import write_file_atomically
from studio.embeddings.textual_inversion_embedding import (
    ARCHITECTURE_SDXL,
    BASE_FAMILY_KEY,
    SDXL_ENCODERS,
    SDXL_PLACEHOLDER_KEY as PLACEHOLDER_KEY,
)

SDXL_FORMATS = ("native", "kohya")
SDXL_EXTENSION = ".safetensors"
MODELSPEC_SDXL_ARCHITECTURE = "stable-diffusion-xl-v1-base/textual-inversion"
# kohya's SD3 architecture without the variant ("-m", "-5-large", ...), which
# the embedding does not know.
MODELSPEC_SD3_ARCHITECTURE = "stable-diffusion-3/textual-inversion"
SD3_FAMILY = "sd3"
MODELSPEC_SDXL_RESOLUTION = "1024x1024"


def save_sdxl_embedding(embedding, path, format="native", dtype=None):
    """Writes an SD-XL `embedding` atomically as a `{clip_l, clip_g}` `.safetensors` file.

    Called by `studio.embeddings.save_embedding` for SD-XL embeddings.

    Args:
        embedding: a `TextualInversionEmbedding` with `architecture="sd-xl"`.
        path: the file, ending with `.safetensors`.
        format: "native" or "kohya".
        dtype: "float32" or "float16" (kohya only); None keeps float16
            embeddings float16 in kohya files and writes the rest as float32.

    Returns:
        `path`.

    Raises:
        InvalidInputError: another format or extension, float16 for a
            native file, or values beyond float16's range.
    """
    # The shared helpers of the SD 1.x/2.x writer: metadata, dtypes, casts.
    from studio.embeddings import embedding_files

    if format not in SDXL_FORMATS:
        raise InvalidInputError(
            f"An SD-XL embedding is written as one of {SDXL_FORMATS} (kohya's file loads in "
            "AUTOMATIC1111/Forge, ComfyUI and diffusers). Received: "
            f"format={format!r}"
        )
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() != SDXL_EXTENSION:
        raise InvalidInputError(
            f"An SD-XL embedding file must end with {SDXL_EXTENSION}. Received: path={path!r}"
        )
    if embedding.architecture != ARCHITECTURE_SDXL:
        raise InvalidInputError(
            "Only SD-XL embeddings (clip_l + clip_g vectors) have this layout. Received: an "
            f"{embedding.architecture} embedding of placeholders {embedding.placeholders}"
        )
    array_dtype = embedding_files._save_dtype(embedding, format, dtype)
    tensors = {
        key: embedding_files._cast(key, embedding.vectors[key], array_dtype)
        for key in SDXL_ENCODERS
    }
    metadata = sdxl_metadata(embedding)
    if format == "kohya":
        metadata.update(_kohya_metadata(embedding))
    return write_file_atomically(path, safetensors.numpy.save(tensors, metadata=metadata))


def sdxl_metadata(embedding):
    """The studio's metadata of an SD-XL file (its token, if known, as `studio.placeholder`)."""
    from studio.embeddings import embedding_files

    placeholder = embedding.metadata.get(PLACEHOLDER_KEY, "")
    metadata = embedding_files._studio_metadata(embedding)
    # `_studio_metadata` names the encoders as placeholders; the token is ours.
    for key in (embedding_files.KEY_PLACEHOLDERS, embedding_files.KEY_PLACEHOLDER):
        metadata.pop(key, None)
    if placeholder:
        metadata[PLACEHOLDER_KEY] = placeholder
    family = embedding.metadata.get(BASE_FAMILY_KEY, "")
    if family:
        metadata[BASE_FAMILY_KEY] = family
    metadata[embedding_files.KEY_NUM_VECTORS] = str(embedding.vectors[SDXL_ENCODERS[0]].shape[0])
    return metadata


def _kohya_metadata(embedding):
    placeholder = embedding.metadata.get(PLACEHOLDER_KEY, "")
    is_sd3 = embedding.metadata.get(BASE_FAMILY_KEY) == SD3_FAMILY
    metadata = {
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": (
            MODELSPEC_SD3_ARCHITECTURE if is_sd3 else MODELSPEC_SDXL_ARCHITECTURE
        ),
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
        "modelspec.implementation_version": f"keras-sd-studio/{__version__}",
        "modelspec.resolution": MODELSPEC_SDXL_RESOLUTION,
        "modelspec.date": datetime.datetime.now().replace(microsecond=0).isoformat(),
    }
    if not is_sd3:
        # SD3 predicts a flow, for which ModelSpec has no name.
        metadata["modelspec.prediction_type"] = "epsilon"
    if placeholder:
        metadata["modelspec.title"] = placeholder
        metadata["modelspec.trigger_phrase"] = placeholder
    return metadata


def load_diffusers_sdxl_embedding(path, path_2):
    """Joins the two files of diffusers' `textual_inversion_sdxl.py` into one SD-XL embedding.

    Args:
        path: `learned_embeds.safetensors` (or `.bin`): `{token: (n, 768)}`
            for CLIP ViT-L.
        path_2: `learned_embeds_2.safetensors`: `{token: (n, 1280)}` for
            OpenCLIP bigG, the same token and count.

    Returns:
        A `TextualInversionEmbedding` with `architecture="sd-xl"`, its token
        in `metadata["studio.placeholder"]`, format "diffusers".

    Raises:
        InvalidInputError: the files do not hold one and the same token with
            as many vectors each.
    """
    from studio.embeddings.embedding_files import load_embedding
    from studio.embeddings.textual_inversion_embedding import TextualInversionEmbedding

    first, second = load_embedding(path), load_embedding(path_2)
    shapes = {
        os.fspath(path): {k: v.shape for k, v in first.vectors.items()},
        os.fspath(path_2): {k: v.shape for k, v in second.vectors.items()},
    }
    if (
        first.architecture == ARCHITECTURE_SDXL
        or second.architecture == ARCHITECTURE_SDXL
        or len(first.vectors) != 1
        or first.placeholders != second.placeholders
        or first.num_vectors != second.num_vectors
    ):
        raise InvalidInputError(
            "diffusers' SD-XL embedding is two files with one and the same token and number "
            "of vectors: learned_embeds (CLIP ViT-L) and learned_embeds_2 (bigG). "
            f"Received: {shapes}"
        )
    (token,) = first.placeholders
    vectors = {SDXL_ENCODERS[0]: first.vectors[token], SDXL_ENCODERS[1]: second.vectors[token]}
    dtype = "float16" if all(v.dtype == np.float16 for v in vectors.values()) else "float32"
    return TextualInversionEmbedding(
        {key: value.astype(dtype) for key, value in vectors.items()},
        architecture=ARCHITECTURE_SDXL,
        dtype=dtype,
        format="diffusers",
        metadata={PLACEHOLDER_KEY: token},
    )
