"""Where a keras-hub preset's Kaggle files are on this machine, told without the network.

keras-hub's `from_preset` reads a preset named by a Kaggle handle
(`kaggle://keras/stablediffusion-3.5/keras/stable_diffusion_3.5_medium/1`)
through kagglehub: in a Kaggle notebook from the model attached to it
(mounted under `/kaggle/input`), elsewhere from kagglehub's cache, where
the first use downloads it. The app only looks at those two folders.
"""

import os

KAGGLE_SCHEME = "kaggle://"
# Where a Kaggle notebook mounts its inputs (kagglehub's default, and the
# variable that moves it).
KAGGLE_INPUT_FOLDER = "/kaggle/input"
KAGGLE_INPUT_FOLDER_VARIABLE = "KAGGLE_CACHE_MOUNT_FOLDER"
# What keras-hub reads to build a backbone with its weights: the config and
# either one weights file or the index of sharded ones.
CONFIG_FILE = "config.json"
WEIGHTS_FILES = ("model.weights.h5", "model.weights.json")


def kaggle_handle(preset):
    """keras-hub's Kaggle handle of an SD3 preset, without the scheme.

    Args:
        preset: a keras-hub SD3 preset name, e.g. `"stable_diffusion_3.5_medium"`.

    Returns:
        `"owner/model/framework/variation/version"`, e.g.
        `"keras/stablediffusion-3.5/keras/stable_diffusion_3.5_medium/1"`.

    Raises:
        KeyError: `preset` is not one of keras-hub's SD3 presets.
    """
    from keras_hub.src.models.stable_diffusion_3.stable_diffusion_3_presets import (
        backbone_presets,
    )

    return backbone_presets[preset]["kaggle_handle"].removeprefix(KAGGLE_SCHEME)


def local_preset_folder(preset):
    """The folder holding `preset`'s backbone files on this machine, or None.

    The model attached to a Kaggle notebook first, then kagglehub's cache
    (files whose download completed).
    """
    from kagglehub.cache import Cache
    from kagglehub.handle import parse_model_handle

    handle = kaggle_handle(preset)
    # A notebook mounts an attached model as <model>/<framework>/<variation>/<version>.
    slug = handle.split("/", 1)[1]
    attached = os.path.join(
        os.environ.get(KAGGLE_INPUT_FOLDER_VARIABLE, KAGGLE_INPUT_FOLDER), slug)
    if _has_backbone_files(lambda name: os.path.join(attached, name)
                           if os.path.isfile(os.path.join(attached, name)) else None):
        return attached
    cache, model = Cache(), parse_model_handle(handle)
    if _has_backbone_files(lambda name: cache.load_from_cache(model, name)):
        return os.path.dirname(cache.load_from_cache(model, CONFIG_FILE))
    return None


def kaggle_preset_hint(preset):
    """How to get `preset` onto this machine, in two sentences (a notebook, elsewhere)."""
    owner, model, framework, variation, version = kaggle_handle(preset).split("/")
    return (
        f"In a Kaggle notebook, accept the licence on kaggle.com/models/{owner}/{model}, "
        f"then Add Input → Models → {owner}/{model}, framework {framework.capitalize()}, "
        f"variation {variation}, version {version}. Elsewhere `studio generate --model "
        f"{preset} ...` downloads it once with your Kaggle credentials (KAGGLE_USERNAME and "
        "KAGGLE_KEY, the licence accepted), into kagglehub's cache, where the app finds it."
    )


def _has_backbone_files(find):
    return find(CONFIG_FILE) is not None and any(find(name) is not None for name in WEIGHTS_FILES)
