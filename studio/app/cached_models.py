"""Models and pipelines, loaded once per process and shared by every session."""

import copy
import os

import streamlit as st

# Full-size backbones take gigabytes: keep few.
MAX_BACKBONES = 2
MAX_PIPELINES = 6


def file_key(path):
    """`(path, modification time)`: a cache key that changes when the file does."""
    return (os.path.abspath(path), os.path.getmtime(path))


@st.cache_resource(max_entries=MAX_BACKBONES, show_spinner="Loading the model…")
def load_backbone(preset, loras=()):
    """The backbone of `preset` with LoRA files applied.

    Args:
        preset: a preset name or saved model folder.
        loras: tuple of `((path, mtime), scale)`; each distinct tuple is a
            separate backbone, since LoRA changes the UNet's layers.
    """
    from studio import interop
    from studio.lora.lora_weights import LoRAWeights

    backbone = interop.load_backbone(preset)
    for (path, _), scale in loras:
        LoRAWeights.load(path).apply(backbone, scale=scale, strict=False)
    return backbone


@st.cache_resource(max_entries=MAX_BACKBONES, show_spinner="Preparing the pipeline…")
def load_base_pipeline(preset, loras=()):
    """A `TextToImagePipeline` of `load_backbone(preset, loras)`, its denoiser compiled once."""
    from studio.pipelines import TextToImagePipeline

    return TextToImagePipeline(load_backbone(preset, loras))


@st.cache_resource(max_entries=MAX_PIPELINES, show_spinner="Loading the embeddings…")
def load_pipeline(preset, loras=(), embeddings=()):
    """A `TextToImagePipeline` of `preset` with LoRA files and embedding files loaded.

    Pipelines of one backbone share its compiled denoiser: embeddings
    change only the text side, so a new set costs no compilation. An SD-XL
    or SD3 file that does not name its token is named by its file, as
    `studio generate` does (`file_library.embedding_tokens`).

    Args:
        preset: a preset name or saved model folder.
        loras: as `load_backbone`.
        embeddings: tuple of `(path, mtime)` of embedding files.
    """
    from studio.files.a1111_name import a1111_name
    from studio.embeddings.backbone_with_embeddings import backbone_with_embeddings
    from studio.embeddings import load_embedding

    base = load_base_pipeline(preset, loras)
    if not embeddings:
        return base
    pipeline = copy.copy(base)
    # A {clip_l, clip_g} file that does not name its token is named by its file.
    pipeline.backbone = backbone_with_embeddings(
        base.backbone, [load_embedding(path) for path, _ in embeddings],
        names=[a1111_name(path) for path, _ in embeddings],
    )
    return pipeline



@st.cache_resource(max_entries=MAX_BACKBONES, show_spinner="Reading the model's vocabulary…")
def load_token_table(preset):
    """`(table, tokenizer)`: the text encoder's token vectors (numpy) and the tokenizer."""
    import keras

    backbone = load_backbone(preset)
    table = keras.ops.convert_to_numpy(backbone.token_embedding.embeddings)
    return table, backbone.tokenizer
