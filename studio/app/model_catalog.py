"""The base models the app offers, from the preset registry, and which are usable offline."""

import dataclasses
import os


@dataclasses.dataclass
class ModelChoice:
    """One preset as the model pickers show it.

    Attributes:
        name: the preset name (`studio.models.BACKBONE_PRESETS`).
        description: the preset's description.
        available: True when it loads without a download.
        how_to_get: for an unavailable preset, what to do (files, where).
        image_size: the preset's resolution in pixels.
    """

    name: str
    description: str
    available: bool
    how_to_get: str
    image_size: int

    @property
    def label(self):
        mark = "✓ offline" if self.available else "needs download"
        return f"{self.name} ({mark})"


def model_choices():
    """A `ModelChoice` per registered preset, available ones first (registry order within)."""
    from studio.models import BACKBONE_PRESETS

    choices = [_choice(name, spec) for name, spec in BACKBONE_PRESETS.items()]
    return sorted(choices, key=lambda choice: not choice.available)


def _choice(name, spec):
    from studio.models.weight_file_resolver import keras_cache_folder

    missing = []
    for component, weights in (spec.get("weights") or {}).items():
        local = weights.get("path") or os.path.join(keras_cache_folder(), weights["file_name"])
        if not os.path.isfile(local):
            missing.append(f"{weights['file_name']} ({component}) from {weights.get('origin', '?')}")
    tokenizer = spec.get("tokenizer") or {}
    if tokenizer.get("type") == "clip":
        from studio.tokenizers import CLIP_VOCABULARY_FILENAME, CLIP_VOCABULARY_ORIGIN

        home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
        vocabulary = os.path.join(home, "datasets", CLIP_VOCABULARY_FILENAME)
        if not os.path.isfile(vocabulary):
            missing.append(f"{CLIP_VOCABULARY_FILENAME} (tokenizer) from {CLIP_VOCABULARY_ORIGIN}")
    how_to_get = ""
    if missing:
        how_to_get = (
            "Download these files once (on a machine with internet access) into the Keras "
            f"cache, {keras_cache_folder()} (the vocabulary into its `datasets` folder "
            "beside it), or run `studio generate --model " + name + " ...` once online: "
            + "; ".join(missing)
        )
    return ModelChoice(
        name=name,
        description=spec.get("description", ""),
        available=not missing,
        how_to_get=how_to_get,
        image_size=int(spec.get("image_size", 512)),
    )
