"""Finds the components' weight files: local paths, the Keras cache or a download."""

import os

from studio.errors import WeightsNotFoundError
from studio.files.keras_home import keras_home


def resolve_weight_files(preset, specs, weights=None):
    """Returns the local path of each component's weight file.

    Args:
        preset: the preset's name, for messages ("sd-v1").
        specs: component -> dict with `file_name`, `origin` and `file_hash`
            (sha256), as published by KerasCV.
        weights: None to use the Keras cache (downloading each file once and
            checking its hash), a folder holding the files, or a dict
            component -> file or folder.

    Raises:
        WeightsNotFoundError: one message naming every missing file, where it
            comes from, and how to point to a local copy.
    """
    paths, missing = {}, []
    for component, spec in specs.items():
        local = weights.get(component) if isinstance(weights, dict) else weights
        if local is not None:
            paths[component] = _local_file(spec, component, preset, local)
            continue
        try:
            paths[component] = _cached_or_downloaded(spec)
        except Exception as error:  # get_file raises bare Exception offline.
            missing.append((component, spec, error))
    if missing:
        raise WeightsNotFoundError(_missing_message(preset, missing))
    return paths


def keras_cache_folder():
    """The folder where `keras.utils.get_file` keeps model files."""
    return keras_home("models")


def _local_file(spec, component, preset, local):
    path = os.path.join(local, spec["file_name"]) if os.path.isdir(local) else local
    if not os.path.isfile(path):
        raise WeightsNotFoundError(
            f"The {component} weights of preset '{preset}' are not in "
            f"{local}: expected the file {spec['file_name']} there "
            f"(published at {spec['origin']}). Received: weights={local!r}"
        )
    return path


def _cached_or_downloaded(spec):
    import keras

    return keras.utils.get_file(
        fname=spec["file_name"],
        origin=spec["origin"],
        file_hash=spec["file_hash"],
        cache_subdir="models",
    )


def _missing_message(preset, missing):
    cache = keras_cache_folder()
    files = "\n".join(
        f"  - {spec['file_name']} ({component}): {spec['origin']} "
        f"(sha256 {spec['file_hash']})"
        for component, spec, _ in missing
    )
    reason = missing[0][2]
    return (
        f"The weights of preset '{preset}' are missing: these files are not "
        f"in the Keras cache ({cache}) and could not be downloaded "
        f"({reason}):\n{files}\n"
        "If this machine is offline, download them elsewhere, then pass the "
        "folder holding them with `--weights DIR` (Python: "
        f"`StableDiffusionBackbone.from_preset('{preset}', weights=DIR)`), "
        f"or copy them into {cache}."
    )
