"""Embedding and LoRA files the app knows: its library folders and the runs' results."""

import dataclasses
import functools
import os

from studio.app.run_record import list_runs
from studio.app.safe_uploads import EMBEDDING_EXTENSIONS, LORA_EXTENSIONS
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


@functools.lru_cache(maxsize=512)
def _placeholders(path, mtime):
    from studio.embeddings import load_embedding

    return tuple(load_embedding(path).placeholders)


def picker_label(file):
    """How pickers name a file: an embedding by its tokens, then its run and step
    (`<cat-toy> · cat-toy-run · final`); a LoRA by its run or file name."""
    if file.path.endswith(LORA_FILE) or not file.path.lower().endswith(EMBEDDING_EXTENSIONS):
        return file.label
    try:
        tokens = ", ".join(_placeholders(file.path, os.path.getmtime(file.path)))
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
