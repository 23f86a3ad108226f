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
        embedded: True for a model whose trained weights ship with the
            package (`tiny-shapes`): it draws something on any machine.
        initializer_word: a word the model knows, suggested as a new
            token's starting point.
        instance_prompt: a suggested DreamBooth instance prompt.
        text_encoder_width: the width of its token vectors (an embedding's
            width must match).
        family: the model family (`studio.models.presets`: "stable_diffusion",
            "sdxl"); the pickers offer the files that load into it.
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

    @property
    def label(self):
        mark = "✓ offline" if self.available else "needs download"
        return f"{self.name} ({mark})"


def model_choices():
    """A `ModelChoice` per registered preset: the embedded model, other available ones, the rest.

    Registry order within each group. The embedded model comes first
    because it is the one that has learned something on every machine.
    """
    from studio.models import BACKBONE_PRESETS

    choices = [_choice(name, spec) for name, spec in BACKBONE_PRESETS.items()]
    return sorted(choices, key=lambda choice: (not choice.available, not choice.embedded))


def _choice(name, spec):
    from studio.models.weight_file_resolver import keras_cache_folder

    missing = []
    for component, weights in (spec.get("weights") or {}).items():
        local = weights.get("path") or os.path.join(keras_cache_folder(), weights["file_name"])
        if not os.path.isfile(local):
            missing.append(f"{weights['file_name']} ({component}) from {weights.get('origin', '?')}")
    tokenizer = spec.get("tokenizer") or {}
    if tokenizer.get("type") == "clip":
        from studio.files.keras_home import keras_home
        from studio.tokenizers import CLIP_VOCABULARY_FILENAME, CLIP_VOCABULARY_ORIGIN
        from studio.tokenizers.clip_vocabulary import KERAS_CACHE_SUBDIR

        vocabulary = keras_home(KERAS_CACHE_SUBDIR, CLIP_VOCABULARY_FILENAME)
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
    words = {}
    if tokenizer.get("type") == "shapes_world":
        # The world's vocabulary has no "toy"; its generic noun is "shape".
        words = {"initializer_word": "shape", "instance_prompt": "a sks shape",
                 "example_prompt": "a red circle on a white background",
                 "concept_words": "a shape"}
    return ModelChoice(
        name=name,
        description=spec.get("description", ""),
        available=not missing,
        how_to_get=how_to_get,
        image_size=int(spec.get("image_size", 512)),
        embedded=bool(spec.get("packaged_weights")),
        text_encoder_width=int(spec["text_encoder"]["config"]["hidden_dim"]),
        family=spec["family"],
        **words,
    )
