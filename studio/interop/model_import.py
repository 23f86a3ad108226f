"""Imports a model folder or file, whichever layout it is in."""

import os

from studio.errors import InvalidInputError
from studio.interop.diffusers_folder import import_diffusers_folder, is_diffusers_folder
from studio.interop.sdxl_diffusers_folder import import_sdxl_diffusers_folder, is_sdxl_folder
from studio.interop.single_file_checkpoint import import_single_file


def import_model(source, prediction_type=None, image_size=None, vocabulary=None, dtype=None):
    """Builds a backbone (SD 1.x / 2.x or SDXL) from a diffusers folder or a single file.

    Args:
        source: a diffusers folder (`model_index.json`, `unet/`, ...) or an
            original-LDM single file (`.safetensors`, `.ckpt`).
        prediction_type: None to infer it (diffusers: the scheduler config;
            single files: see `single_file_checkpoint`), or `"epsilon"` /
            `"v_prediction"`.
        image_size: None to infer the training resolution, or pixels.
        vocabulary: single files only: the tokenizer (see
            `import_single_file`); diffusers folders bring theirs.
        dtype: the networks' dtype policy (e.g. `"mixed_float16"`); None
            keeps Keras' global policy.

    Returns:
        A `studio.models.StableDiffusionBackbone`; `save_to_preset` writes
        it as a folder that `StableDiffusionBackbone.from_preset` loads.

    Raises:
        FileNotFoundError: `source` does not exist.
        ValueError: `vocabulary` given for a diffusers folder.
        CheckpointFormatError, UnsupportedModelError: see the importers.
    """
    source = os.fspath(source)
    if is_diffusers_folder(source):
        if vocabulary is not None:
            raise InvalidInputError(
                "A diffusers folder brings its own tokenizer (tokenizer/); `vocabulary` "
                f"is for single files. Received: vocabulary={vocabulary!r}"
            )
        importer = import_sdxl_diffusers_folder if is_sdxl_folder(source) else import_diffusers_folder
        backbone = importer(source, prediction_type=prediction_type, dtype=dtype)
        if image_size is not None:
            backbone.image_size = int(image_size)
        return backbone
    if os.path.isfile(source):
        return import_single_file(
            source,
            prediction_type=prediction_type,
            image_size=image_size,
            vocabulary=vocabulary,
            dtype=dtype,
        )
    if os.path.isdir(source):
        raise FileNotFoundError(
            f"{source} is a folder but not a diffusers model: it has neither "
            f"model_index.json nor unet/config.json. Received: files "
            f"{sorted(os.listdir(source))[:10]}"
        )
    raise FileNotFoundError(f"{source} does not exist. Received: source={source!r}")
