"""One entry point for a user's `--model`: presets, saved folders, diffusers folders, single files."""

import os

from studio.errors import InvalidInputError
from studio.interop.diffusers_folder import is_diffusers_folder

# `seed`'s default: the backbone's own (`RANDOM_WEIGHTS_SEED`), looked up
# when called, since importing studio.interop must not import Keras.
_BACKBONE_DEFAULT = object()


def load_backbone(
    source,
    *,
    dtype=None,
    weights=None,
    vocabulary=None,
    load_weights=True,
    seed=_BACKBONE_DEFAULT,
):
    """Builds the backbone a user names, whatever the form.

    Preset names and folders written by `save_to_preset` go to the family's
    `from_preset`; diffusers folders and original single files
    (`.safetensors`, `.ckpt`) are converted by `import_model`.

    Args:
        source: a preset name ("sd-v1", "sd-v2", "tiny", "tiny-shapes"), a
            saved folder, a diffusers folder, or a single file.
        dtype: a dtype policy for the networks; None keeps Keras' global one.
        weights: named presets only: where their published weight files
            are (see `StableDiffusionBackbone.from_preset`).
        vocabulary: a local CLIP vocabulary file or folder (presets and
            single files).
        load_weights: False builds random networks (presets and saved
            folders only).
        seed: seeds the initialisation of networks whose weights are not
            loaded (presets and saved folders); by default the backbone's
            `RANDOM_WEIGHTS_SEED`, None leaves Keras' random state alone.

    Returns:
        A `studio.models.DiffusionBackbone`.

    Raises:
        ValueError: an unknown preset name, or `load_weights=False` /
            `weights` for a model to convert.
        WeightsNotFoundError: weight files neither local nor downloadable.
        UnsupportedModelError, CheckpointFormatError: a diffusers folder or
            single file the studio cannot convert.
    """
    if _is_model_to_import(source):
        if not load_weights or weights is not None:
            raise InvalidInputError(
                f"{source} is converted with its own weights; `load_weights=False` and "
                f"`weights` are for named presets. Received: load_weights={load_weights}, "
                f"weights={weights!r}"
            )
        from studio.interop.model_import import import_model

        return import_model(source, vocabulary=vocabulary, dtype=dtype)
    from studio.models import BACKBONE_PRESETS, backbone_class, family_of

    spec = BACKBONE_PRESETS.get(source) if isinstance(source, str) else None
    if spec is not None and spec.get("imported_weights") and weights is not None and load_weights:
        return _import_preset_weights(source, spec, weights, vocabulary, dtype)

    options = {} if seed is _BACKBONE_DEFAULT else {"seed": seed}
    return backbone_class(family_of(source)).from_preset(
        source,
        load_weights=load_weights,
        weights=weights,
        vocabulary=vocabulary,
        dtype=dtype,
        **options,
    )


def _import_preset_weights(preset, spec, weights, vocabulary, dtype):
    """A preset whose weights are a user's file or folder (`sdxl-base`): imported, then checked."""
    from studio.interop.model_import import import_model

    if not _is_model_to_import(weights):
        raise InvalidInputError(
            f"The weights of preset '{preset}' are a model file (.safetensors) or a diffusers "
            f"folder. Received: weights={weights!r}"
        )
    backbone = import_model(weights, vocabulary=vocabulary, dtype=dtype)
    if backbone.family != spec["family"]:
        raise InvalidInputError(
            f"{weights} is a {backbone.family} model, not one of preset '{preset}' "
            f"({spec['family']}). Received: weights={weights!r}"
        )
    return backbone


def _is_model_to_import(source):
    """True for a single file or a diffusers folder (a saved studio folder is not one)."""
    from studio.models.stable_diffusion_backbone import PRESET_CONFIG_FILE

    path = os.fspath(source)
    if os.path.isfile(path):
        return True
    return (
        os.path.isdir(path)
        and not os.path.isfile(os.path.join(path, PRESET_CONFIG_FILE))
        and is_diffusers_folder(path)
    )
