"""The CLIP text encoder's weight names: ours, Hugging Face CLIP's, OpenCLIP's.

SD 1.x uses OpenAI's CLIP ViT-L/14, stored with Hugging Face names both in
diffusers folders (`text_encoder/`, under `text_model.`) and in original
single files (under `cond_stage_model.transformer.text_model.`). SD 2.x
uses OpenCLIP's ViT-H/14: diffusers converts it to Hugging Face names,
single files keep OpenCLIP's (under `cond_stage_model.model.`), where
query, key and value are one stacked `in_proj_weight` and the positions a
bare `positional_embedding` tensor.

SDXL adds OpenCLIP ViT-bigG with its text projection: in Hugging Face
names (`CLIPTextModelWithProjection`) a Linear `text_projection` beside
`text_model.`, in OpenCLIP's a bare `text_projection` matrix applied as
`x @ text_projection`. SDXL single files keep CLIP ViT-L in Hugging Face
names under `conditioner.embedders.0.transformer.text_model.` and bigG in
OpenCLIP's under `conditioner.embedders.1.model.`.

`text_encoder_weight_names(encoder, layout, prefix)` returns the table
for `weight_transfer`.
"""

from studio.interop.weight_transfer import (
    EMBEDDING,
    FUSED_QKV,
    LINEAR,
    MATRIX,
    NORM,
    PARAMETER,
)

HUGGING_FACE = "hugging_face"
OPEN_CLIP = "open_clip"
LAYOUTS = (HUGGING_FACE, OPEN_CLIP)
# Where the text encoder's tensors are, by file layout.
DIFFUSERS_PREFIX = "text_model."
LDM_CLIP_PREFIX = "cond_stage_model.transformer.text_model."
# Some SD 1.x single files lack the `text_model.` level (AUTOMATIC1111
# renames their keys on load).
LDM_LEGACY_CLIP_PREFIX = "cond_stage_model.transformer."
LDM_OPEN_CLIP_PREFIX = "cond_stage_model.model."
SGM_CLIP_PREFIX = "conditioner.embedders.0.transformer.text_model."
SGM_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
# Hugging Face's projection sits beside `text_model.`, not inside it.
HUGGING_FACE_TEXT_MODEL = "text_model."
# Kohya's LoRA files name a text-encoder module `lora_te_` + its Hugging
# Face name with underscores for dots.
KOHYA_TEXT_ENCODER_PREFIX = "lora_te"

# Top-level layers: ours, Hugging Face's name (kind), OpenCLIP's (kind).
ENCODER = (
    ("token_embedding", ("embeddings.token_embedding", EMBEDDING), ("token_embedding", EMBEDDING)),
    (
        "position_embedding",
        ("embeddings.position_embedding", EMBEDDING),
        ("positional_embedding", PARAMETER),
    ),
    ("final_layer_norm", ("final_layer_norm", NORM), ("ln_final", NORM)),
)
# Where the transformer blocks are numbered.
LAYERS = {HUGGING_FACE: "encoder.layers", OPEN_CLIP: "transformer.resblocks"}
# Sub-layers of a `CLIPEncoderLayer`, in each layout. OpenCLIP's fused
# projection maps the block itself (its query, key and value layers).
HUGGING_FACE_LAYER = (
    ("attention_layer_norm", "layer_norm1", NORM),
    ("query_dense", "self_attn.q_proj", LINEAR),
    ("key_dense", "self_attn.k_proj", LINEAR),
    ("value_dense", "self_attn.v_proj", LINEAR),
    ("output_dense", "self_attn.out_proj", LINEAR),
    ("mlp_layer_norm", "layer_norm2", NORM),
    ("intermediate_dense", "mlp.fc1", LINEAR),
    ("mlp_output_dense", "mlp.fc2", LINEAR),
)
OPEN_CLIP_LAYER = (
    ("attention_layer_norm", "ln_1", NORM),
    (None, "attn", FUSED_QKV),
    ("output_dense", "attn.out_proj", LINEAR),
    ("mlp_layer_norm", "ln_2", NORM),
    ("intermediate_dense", "mlp.c_fc", LINEAR),
    ("mlp_output_dense", "mlp.c_proj", LINEAR),
)
LAYER_TEMPLATES = {HUGGING_FACE: HUGGING_FACE_LAYER, OPEN_CLIP: OPEN_CLIP_LAYER}


def text_encoder_weight_names(encoder, layout, prefix):
    """The `CLIPTextEncoder`'s table: `(keras_path, torch_name, kind)` rows.

    Args:
        encoder: a `studio.models.CLIPTextEncoder`.
        layout: `"hugging_face"` or `"open_clip"`.
        prefix: prepended to every PyTorch name, e.g. `DIFFUSERS_PREFIX`.

    Returns:
        A list of rows.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {LAYOUTS}. Received: layout={layout!r}")
    column = 1 if layout == HUGGING_FACE else 2
    names = []
    for row in ENCODER:
        torch_name, kind = row[column]
        names.append((row[0], prefix + torch_name, kind))
    for index in range(encoder.num_layers):
        ours, block = f"encoder_layer_{index}", f"{prefix}{LAYERS[layout]}.{index}"
        for sub, torch_sub, kind in LAYER_TEMPLATES[layout]:
            keras_path = ours if sub is None else f"{ours}.{sub}"
            names.append((keras_path, f"{block}.{torch_sub}", kind))
    if getattr(encoder, "text_projection", None) is not None:
        if layout == HUGGING_FACE:
            if not prefix.endswith(HUGGING_FACE_TEXT_MODEL):
                raise ValueError(
                    "A projected encoder's Hugging Face prefix ends with "
                    f"{HUGGING_FACE_TEXT_MODEL!r} (the projection sits beside it). "
                    f"Received: prefix={prefix!r}"
                )
            outer = prefix[: -len(HUGGING_FACE_TEXT_MODEL)]
            names.append(("text_projection", f"{outer}text_projection", LINEAR))
        else:
            names.append(("text_projection", f"{prefix}text_projection", MATRIX))
    return names
