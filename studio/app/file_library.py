"""Embedding and LoRA files the app knows: its library folders and the runs' results."""

import dataclasses
import functools
import os

from studio.app.run_record import list_runs
from studio.app.safe_uploads import EMBEDDING_EXTENSIONS, LORA_EXTENSIONS
from studio.files.a1111_name import a1111_name
from studio.trainers.run.run_directory import EMBEDDING_FILE, LORA_FILE


@dataclasses.dataclass(frozen=True)
class LibraryFile:
    """A file the pickers offer.

    Attributes:
        label: how pickers name it ("cat-toy-… · final", "my.pt").
        path: the file.
        run: the run folder's name when it is a run's result, else "".
        step: the checkpoint's step, None for a run's final result.
    """

    label: str
    path: str
    run: str = ""
    step: int = None


def embedding_files(data_folder, include_checkpoints=True):
    """The library's embedding files, then each run's final and checkpoint embeddings."""
    return _library(data_folder.embeddings, EMBEDDING_EXTENSIONS) + _run_files(
        data_folder, EMBEDDING_FILE, include_checkpoints
    )


def lora_files(data_folder, include_checkpoints=True):
    """The library's LoRA files, then each run's final and checkpoint LoRA files."""
    return _library(data_folder.loras, LORA_EXTENSIONS) + _run_files(
        data_folder, LORA_FILE, include_checkpoints
    )


def files_for_model(files, model, lora=False):
    """The `LibraryFile`s that load into `model` (a `ModelChoice`; None: all of them).

    An embedding with one table fits SD 1.x / 2.x models of its vectors'
    width; a `{clip_l, clip_g}` one fits SD-XL and SD3 (both read that
    layout), or SD3 only when its metadata says it was trained on SD3. A LoRA
    (`lora=True`) fits the base model that kohya's metadata names, else
    the family its layer names belong to. A file that cannot be read, or
    says nothing that tells, stays listed: picking it says what is wrong.
    """
    if model is None:
        return list(files)
    fits = _lora_fits if lora else _embedding_fits
    return [file for file in files if fits(file.path, model)]


def embedding_families(path):
    """The model families the embedding file at `path` loads into (`studio.models.presets`'
    names); raises what reading it raises."""
    return _embedding_kind(path, os.path.getmtime(path))[0]


def _embedding_fits(path, model):
    try:
        families, width = _embedding_kind(path, os.path.getmtime(path))
    except Exception:  # Unreadable: listed; picking it says why.
        return True
    return model.family in families and width in (None, model.text_encoder_width)


def _lora_fits(path, model):
    try:
        families = _lora_families(path, os.path.getmtime(path))
    except Exception:  # Unreadable: listed; picking it says why.
        return True
    return not families or model.family in families


@functools.lru_cache(maxsize=512)
def _embedding_kind(path, mtime):
    """(families the embedding at `path` loads into, its vectors' width or None)."""
    from studio.embeddings import load_embedding
    from studio.embeddings.textual_inversion_embedding import (
        ARCHITECTURE_SDXL,
        BASE_FAMILY_KEY,
    )
    from studio.models.presets import SD3, SDXL, STABLE_DIFFUSION

    embedding = load_embedding(path)
    if embedding.architecture == ARCHITECTURE_SDXL:
        # `{clip_l, clip_g}`: SD-XL's layout, which SD3 reads too; the studio's
        # SD3 files say so in their metadata (other tools' files say nothing).
        sd3_only = embedding.metadata.get(BASE_FAMILY_KEY) == SD3
        return (frozenset({SD3}) if sd3_only else frozenset({SDXL, SD3})), None
    return frozenset({STABLE_DIFFUSION}), embedding.text_encoder_width


# kohya's `ss_base_model_version` prefixes, and names only one family's LoRA
# layers have (kohya's and diffusers' spellings), by family.
_LORA_BASE_VERSIONS = (("sdxl", "sdxl"), ("sd3", "sd3"), ("sd_v1", "stable_diffusion"),
                       ("sd_v2", "stable_diffusion"), ("sd_2", "stable_diffusion"))
_LORA_LAYER_NAMES = (
    ("sdxl", ("lora_te2_", "lora_unet_input_blocks_", "lora_unet_output_blocks_",
              "text_encoder_2.")),
    ("sd3", ("lora_unet_joint_blocks_", "transformer.transformer_blocks.")),
    ("stable_diffusion", ("lora_unet_down_blocks_", "lora_unet_up_blocks_")),
)


@functools.lru_cache(maxsize=512)
def _lora_families(path, mtime):
    """The families the LoRA file at `path` is for; empty when nothing tells."""
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as file:
        version = (file.metadata() or {}).get("ss_base_model_version", "")
        keys = list(file.keys())
    for prefix, family in _LORA_BASE_VERSIONS:
        if version.startswith(prefix):
            return frozenset({family})
    for family, names in _LORA_LAYER_NAMES:
        if any(name in key for key in keys for name in names):
            return frozenset({family})
    return frozenset()


def _library(folder, extensions):
    files = []
    for root, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in extensions:
                continue
            path = os.path.join(root, name)
            files.append(LibraryFile(os.path.relpath(path, folder), path))
    return files


def _run_files(data_folder, file_name, include_checkpoints):
    """Each run's final result (newest run first), then, if asked, their checkpoints."""
    finals, checkpoints = [], []
    for record in list_runs(data_folder.runs):
        final = record.run.file(file_name)
        if os.path.isfile(final):
            finals.append(LibraryFile(f"{record.name} · final", final, record.name))
        if include_checkpoints:
            for step, path in reversed(record.checkpoint_files()):
                if os.path.basename(path) == file_name:
                    checkpoints.append(
                        LibraryFile(f"{record.name} · step {step}", path, record.name, step)
                    )
    return finals + checkpoints


def embedding_tokens(path):
    """The tokens a prompt writes to use the embedding file at `path`.

    An SD 1.x / 2.x file's placeholders; a `{clip_l, clip_g}` file (SD-XL,
    SD3) holds one token: the one the studio records in it, else the file's
    name (A1111's rule, which `load_pipeline` follows). Raises what reading
    the file raises.
    """
    return _tokens(os.path.abspath(path), os.path.getmtime(path))


@functools.lru_cache(maxsize=512)
def _tokens(path, mtime):
    from studio.embeddings import load_embedding
    from studio.embeddings.textual_inversion_embedding import (
        ARCHITECTURE_SDXL,
        SDXL_PLACEHOLDER_KEY,
    )

    embedding = load_embedding(path)
    if embedding.architecture == ARCHITECTURE_SDXL:
        return (embedding.metadata.get(SDXL_PLACEHOLDER_KEY) or a1111_name(path),)
    return tuple(embedding.placeholders)


def picker_label(file):
    """How pickers name a file: an embedding by its tokens, then its run and step
    (`<cat-toy> · cat-toy-run · final`); a LoRA by its run or file name."""
    if file.path.endswith(LORA_FILE) or not file.path.lower().endswith(EMBEDDING_EXTENSIONS):
        return file.label
    try:
        tokens = ", ".join(embedding_tokens(file.path))
    except Exception:  # Unreadable: named by its file; picking it says why.
        return file.label
    return f"{tokens} · {file.label}"


def training_images(file, data_folder, size):
    """The training images (uint8, `size` square) of the run a file comes from, or None."""
    import numpy as np
    from PIL import Image

    if not file.run:
        return None
    record = next((r for r in list_runs(data_folder.runs) if r.name == file.run), None)
    folder = (record.config.get("data") if record is not None else None) or ""
    if not os.path.isdir(folder):
        return None
    images = []
    for name in sorted(os.listdir(folder)):
        if os.path.splitext(name)[1].lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
            try:
                with Image.open(os.path.join(folder, name)) as image:
                    images.append(np.asarray(image.convert("RGB").resize((size, size))))
            except OSError:
                continue
    return np.stack(images) if images else None
