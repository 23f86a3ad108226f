"""The base models the app offers, from the preset registries, and which are usable offline."""

import dataclasses
import importlib.util
import os

from studio.schedulers.scheduler_registry import FLOW_SAMPLER_NAMES, SCHEDULER_NAMES

# keras-hub's SD3 presets are 1024 px (their `image_shape`).
KERAS_HUB_SD3_IMAGE_SIZE = 1024
# The SD3 family is keras-hub's networks: an optional dependency.
SD3_EXTRA_HINT = ("SD3 models need keras-hub: install the studio's `sd3` extra "
                  "(`pip install -e \".[sd3]\"`, Python 3.11 or newer).")


@dataclasses.dataclass
class ModelChoice:
    """One preset as the model pickers show it.

    Attributes:
        name: the preset name (`studio.models.BACKBONE_PRESETS` or
            `studio.models.presets.SD3_PRESETS`).
        description: the preset's description.
        available: True when it loads without a download.
        how_to_get: for an unavailable preset, what to do (files, where).
        image_size: the preset's resolution in pixels.
        embedded: True for a model whose trained weights ship with the
            package (`tiny-shapes`): it draws something on any machine.
        initializer_word: a word the model knows, suggested as a new
            token's starting point.
        instance_prompt: a suggested DreamBooth instance prompt.
        text_encoder_width: the width of its token vectors (an embedding's
            width must match); 0 where it is not known before loading
            (keras-hub's SD3 presets).
        family: the model family (`studio.models.presets`: "stable_diffusion",
            "sdxl", "sd3"); the pickers offer the files that load into it.
        samplers: the sampler names it samples with (`studio.schedulers`):
            SD3's rectified flow has flow-matching Euler only.
        example_prompt: a prompt the model draws well, for the Generate page.
        concept_words: plain words standing for a concept in grids.
    """

    name: str
    description: str
    available: bool
    how_to_get: str
    image_size: int
    embedded: bool = False
    text_encoder_width: int = 0
    family: str = "stable_diffusion"
    initializer_word: str = "toy"
    instance_prompt: str = "a photo of sks toy"
    example_prompt: str = "a photo of a cat"
    concept_words: str = "a toy"
    samplers: tuple = SCHEDULER_NAMES

    @staticmethod
    def sampler_names(model):
        """The samplers `model` (a `ModelChoice`, or None: any model) samples with."""
        return list(SCHEDULER_NAMES if model is None else model.samplers)

    @property
    def label(self):
        mark = "✓ offline" if self.available else "needs download"
        return f"{self.name} ({mark})"


def model_choices():
    """A `ModelChoice` per registered preset: the embedded models, other available ones, the rest.

    Registry order within each group (SD 1.x / 2.x and SD-XL, then SD3).
    The embedded models come first because they have learned something
    on every machine.
    """
    from studio.models import BACKBONE_PRESETS
    from studio.models.presets import SD3_PRESETS

    choices = [_choice(name, spec) for name, spec in BACKBONE_PRESETS.items()]
    choices += [_sd3_choice(name, spec) for name, spec in SD3_PRESETS.items()]
    return sorted(choices, key=lambda choice: (not choice.available, not choice.embedded))


def _choice(name, spec):
    """A preset of `BACKBONE_PRESETS`: available when its weight files and vocabulary are here."""
    from studio.models.weight_file_resolver import keras_cache_folder

    missing = []
    for component, weights in (spec.get("weights") or {}).items():
        local = weights.get("path") or os.path.join(keras_cache_folder(), weights["file_name"])
        if not os.path.isfile(local):
            missing.append(f"{weights['file_name']} ({component}) from {weights.get('origin', '?')}")
    tokenizer = spec.get("tokenizer") or {}
    if tokenizer.get("type") == "clip":
        missing += _missing_vocabulary()
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
        embedded=bool(spec.get("packaged_weights")),
        text_encoder_width=int(spec["text_encoder"]["config"]["hidden_dim"]),
        family=spec["family"],
        **_suggested_words(tokenizer),
    )


def _sd3_choice(name, spec):
    """A preset of `SD3_PRESETS`: keras-hub's need their Kaggle files (attached or cached)
    and the CLIP vocabulary; the studio's own build offline. All need keras-hub."""
    how_to_get = ""
    if importlib.util.find_spec("keras_hub") is None:
        how_to_get = SD3_EXTRA_HINT
    elif "keras_hub_preset" in spec:
        from studio.app.kaggle_preset_files import kaggle_preset_hint, local_preset_folder

        missing = _missing_vocabulary()
        if local_preset_folder(spec["keras_hub_preset"]) is None:
            how_to_get = kaggle_preset_hint(spec["keras_hub_preset"])
        if missing:
            how_to_get += (" Its tokenizer needs " + "; ".join(missing) + " in the Keras "
                           "cache's `datasets` folder (fetched once online).")
    return ModelChoice(
        name=name,
        description=spec.get("description", ""),
        available=not how_to_get,
        how_to_get=how_to_get.strip(),
        image_size=int(spec.get("image_size", KERAS_HUB_SD3_IMAGE_SIZE)),
        embedded=bool(spec.get("packaged_weights")),
        # keras-hub's presets tell their widths once loaded.
        text_encoder_width=int(spec["clip_l"]["hidden_dim"]) if "clip_l" in spec else 0,
        family=spec["family"],
        # Flow-matching Euler; "ddim" names the same step, so it is not offered twice.
        samplers=FLOW_SAMPLER_NAMES[:1],
        **_suggested_words(spec.get("tokenizer") or {}),
    )


def _missing_vocabulary():
    """`["<file> (tokenizer) from <origin>"]` when the CLIP vocabulary is not in the Keras cache."""
    from studio.files.keras_home import keras_home
    from studio.tokenizers import CLIP_VOCABULARY_FILENAME, CLIP_VOCABULARY_ORIGIN
    from studio.tokenizers.clip_vocabulary import KERAS_CACHE_SUBDIR

    if os.path.isfile(keras_home(KERAS_CACHE_SUBDIR, CLIP_VOCABULARY_FILENAME)):
        return []
    return [f"{CLIP_VOCABULARY_FILENAME} (tokenizer) from {CLIP_VOCABULARY_ORIGIN}"]


def _suggested_words(tokenizer):
    """The words a model of this tokenizer knows, where the defaults' are not among them."""
    if tokenizer.get("type") == "shapes_world":
        # The world's vocabulary has no "toy"; its generic noun is "shape".
        return {"initializer_word": "shape", "instance_prompt": "a sks shape",
                "example_prompt": "a red circle on a white background",
                "concept_words": "a shape"}
    return {}
