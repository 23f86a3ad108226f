"""An image's infotext (the studio's or AUTOMATIC1111's) back into `GenerationSettings`."""

import dataclasses
import os

from studio.errors import InvalidInputError
from studio.images.generation_parameters import EXTRA_NETWORK_PATTERN
from studio.pipelines.generation_settings import GenerationSettings

LORA_EXTENSIONS = (".safetensors",)
EMBEDDING_EXTENSIONS = (".safetensors", ".pt", ".bin")
CHECKPOINT_EXTENSIONS = (".safetensors", ".ckpt")
# A1111 keys that change the image in ways the studio cannot repeat, and what
# they are. A key whose value is listed as neutral changes nothing.
UNSUPPORTED_KEYS = {
    "Hires upscale": "hires fix (a second, upscaled pass)",
    "Hires steps": "hires fix (a second, upscaled pass)",
    "Hires upscaler": "hires fix (a second, upscaled pass)",
    "Hires resize": "hires fix (a second, upscaled pass)",
    "Variation seed": "variation seeds",
    "Seed resize from": "seed resize",
    "Clip skip": "CLIP skip (prompts encoded by an earlier text-encoder layer)",
    "Refiner": "a refiner model",
    "VAE": "a separate VAE file",
    "VAE hash": "a separate VAE file",
    "Face restoration": "face restoration",
    "Mask blur": "inpainting (the mask is not stored in the image)",
    "Schedule type": "a noise schedule other than the sampler's own",
    "Eta": "a sampler eta other than the default",
}
NEUTRAL_VALUES = {
    "Clip skip": ("1",),
    "Variation seed strength": ("0",),
    "Schedule type": ("Automatic",),
}
# Keys that describe an image without changing it; they are not reported.
DESCRIPTIVE_KEYS = (
    "Model hash", "Version", "Variation seed strength", "RNG", "ENSD",
    "Eta noise seed delta", "Script", "X Type", "X Values", "Y Type", "Y Values",
    "Z Type", "Z Values", "Fixed X Values", "Fixed Y Values", "Grid",
)
DENOISING_STRENGTH_KEY = "Denoising strength"


def settings_from_parameters(
    parameters,
    overrides=None,
    lora_files=(),
    embedding_files=(),
    search_folders=(),
    has_init_image=False,
):
    """The `GenerationSettings` that make an image again, from its infotext.

    LoRA and embedding files are found by the names the infotext gives them:
    first among `lora_files` / `embedding_files` (files of those names), then
    anywhere below `search_folders`; when the infotext has their short hash,
    only a file with that hash will do (a run's checkpoints all hold an
    `embedding.safetensors`: the hash picks the step). Given files that the
    image does not name are used as well.

    Args:
        parameters: a `GenerationParameters` (`studio.images.read_parameters`).
        overrides: dict of `GenerationSettings` fields that replace what
            the image says (what a user gave on the command line); their
            values are not checked against the image.
        lora_files: paths of LoRA files to look in first.
        embedding_files: paths of embedding files to look in first.
        search_folders: folders searched (with their subfolders) for files
            the image names, and for its model when `Model:` is a name (a
            folder of that name, or a checkpoint file, checked against
            `Model hash` when the image has one).
        has_init_image: whether a start image is given (needed for an
            image-to-image infotext, `Denoising strength`).

    Returns:
        `(settings, notes)`: the `GenerationSettings`, and a list of lines
        about what may still differ (an A1111 image's noise) or was ignored.

    Raises:
        InvalidInputError: the image cannot be made again; the message lists
            every reason (an unknown sampler, a LoRA file not found or with
            another hash, hires fix, ...) and how to fix each.
    """
    overrides = dict(overrides or {})
    problems, notes = [], []
    extra = dict(parameters.extra)

    sampler = parameters.sampler
    if "sampler" in overrides:
        extra.pop("Schedule type", None)
    else:
        sampler = _sampler(parameters.sampler, extra, problems)
    for key, value in extra.items():
        if key in UNSUPPORTED_KEYS and value not in NEUTRAL_VALUES.get(key, ()):
            problems.append(f"{UNSUPPORTED_KEYS[key]} ({key}: {value})")
        elif key not in UNSUPPORTED_KEYS and key not in DESCRIPTIVE_KEYS + (DENOISING_STRENGTH_KEY,):
            notes.append(f"ignored {key}: {value} (the studio has no such setting)")
    for match in EXTRA_NETWORK_PATTERN.finditer(parameters.prompt):
        problems.append(
            f"the prompt's {match.group(0)} (the studio applies LoRA tags with one strength "
            "for the UNet and text encoder, and no other extra networks)"
        )
    denoising = extra.get(DENOISING_STRENGTH_KEY)
    if denoising is not None and not has_init_image and not any(
        key.startswith("Hires") for key in extra
    ):
        problems.append(
            f"a start image (image-to-image, {DENOISING_STRENGTH_KEY}: {denoising}): give it "
            "with --init-image"
        )
    model = overrides.get("model", parameters.model)
    if "model" not in overrides:
        model = _model(parameters.model, extra.get("Model hash"), search_folders, problems)
    if "Version" in extra and not str(extra["Version"]).startswith("studio"):
        notes.append(
            f"made by {extra['Version']}: the studio draws its noise with NumPy, so the "
            "image will not be the same pixels even with the same settings"
        )

    loras = [
        (path, reference.strength)
        for reference in parameters.loras
        if (path := _find(reference, "LoRA", lora_files, search_folders, LORA_EXTENSIONS,
                          problems))
    ]
    embeddings = [
        path
        for reference in parameters.embeddings
        if (path := _find(reference, "embedding", embedding_files, search_folders,
                          EMBEDDING_EXTENSIONS, problems))
    ]
    used = {os.path.abspath(path) for path, _ in loras} | {os.path.abspath(p) for p in embeddings}
    loras += [(path, 1.0) for path in lora_files if os.path.abspath(path) not in used]
    embeddings += [path for path in embedding_files if os.path.abspath(path) not in used]

    if problems:
        raise InvalidInputError(
            "The image cannot be made again: the studio cannot reproduce "
            + "; ".join(problems)
            + ". Options given with --from-png replace what the image says."
        )
    settings = GenerationSettings(
        prompt=parameters.prompt,
        negative_prompt=parameters.negative_prompt,
        steps=parameters.steps,
        sampler=sampler,
        guidance_scale=parameters.guidance_scale,
        seed=parameters.seed,
        width=parameters.width or None,
        height=parameters.height or None,
        model=model,
        loras=loras,
        embeddings=embeddings,
        denoising_strength=float(denoising) if denoising is not None else 0.8,
    )
    return dataclasses.replace(settings, **overrides), notes


def _sampler(name, extra, problems):
    """Our sampler for A1111's name and schedule type (A1111 1.9 splits "DPM++ 2M Karras")."""
    from studio.schedulers.scheduler_registry import A1111_SAMPLER_NAMES, scheduler_short_name

    schedule = extra.get("Schedule type")
    candidates = [name]
    if schedule and schedule not in NEUTRAL_VALUES["Schedule type"]:
        candidates = [f"{name} {schedule}"]
    try:
        short = scheduler_short_name(candidates[0])
    except InvalidInputError:
        problems.append(
            f"the sampler {candidates[0]!r} (the studio has {', '.join(A1111_SAMPLER_NAMES)}; "
            "give --sampler to use one of them)"
        )
        return name
    extra.pop("Schedule type", None)
    return short


def _model(name, model_hash, folders, problems):
    """What `--model` takes for the infotext's `Model:`, a name as A1111 writes it.

    A preset, a path, or a model of that name below `folders`: a folder of
    that name, or a single file of that name (with `Model hash`, one with
    that hash).
    """
    from studio.interop.a1111_hashes import checkpoint_short_hash
    from studio.models import BACKBONE_PRESETS

    if name and (name in BACKBONE_PRESETS or os.path.exists(name)):
        return name
    for folder in folders:
        for root, folder_names, names in sorted(os.walk(folder)):
            if name in folder_names:
                return os.path.join(root, name)
            for file_name in sorted(names):
                stem, extension = os.path.splitext(file_name)
                path = os.path.join(root, file_name)
                if stem == name and extension.lower() in CHECKPOINT_EXTENSIONS and (
                    not model_hash
                    or checkpoint_short_hash(path)[: len(model_hash)] == model_hash.lower()
                ):
                    return path
    problems.append(
        f"the model {name!r}"
        + (f" (Model hash {model_hash})" if model_hash else "")
        + ", which is neither a preset nor a file or folder of that name here or below "
        "--concepts-dir: give --model"
    )
    return name


def _find(reference, kind, given, folders, extensions, problems):
    """The file `reference` names, or None after adding why to `problems`."""
    from studio.interop.a1111_hashes import embedding_short_hash, lora_short_hash

    short_hash = reference.short_hash.lower()
    hashing = lora_short_hash if kind == "LoRA" else embedding_short_hash
    candidates = [path for path in given if _is_named(path, reference.name, extensions + (
        os.path.splitext(path)[1].lower(),))]
    for folder in folders:
        for root, _, names in sorted(os.walk(folder)):
            candidates += [os.path.join(root, name) for name in sorted(names)
                           if _is_named(name, reference.name, extensions)]
    for path in candidates:
        if not short_hash or hashing(path)[: len(short_hash)] == short_hash:
            return path
    where = ", ".join(list(folders)) or "no folder"
    if candidates:
        problems.append(
            f"the {kind} {reference.name!r} with hash {reference.short_hash}: "
            f"{', '.join(candidates[:3])} {'has' if len(candidates) == 1 else 'have'} another "
            f"hash; give the file the image was made with (--{kind.lower()} FILE)"
        )
    else:
        problems.append(
            f"the {kind} {reference.name!r}"
            + (f" (hash {reference.short_hash})" if reference.short_hash else "")
            + f": no file of that name in {where}; give it with --{kind.lower()} FILE "
            "or its folder with --concepts-dir DIR"
        )
    return None


def _is_named(path, name, extensions):
    stem, extension = os.path.splitext(os.path.basename(path))
    plain = stem.translate(str.maketrans("", "", ":,"))
    return extension.lower() in extensions and name in (stem, plain)
