"""Which layers of SD3's CLIP-L and CLIP-G LoRA adapts, by the transformers names other tools use.

SD3's text encoders are keras-hub `CLIPTextEncoder`s. kohya's SD3 LoRA
files name their modules as SD-XL's do, `lora_te1_` (CLIP-L) and
`lora_te2_` (CLIP-G) plus the transformers module name with dots as
underscores; ComfyUI maps those names onto `clip_l` / `clip_g` of an SD3
model, and diffusers' `StableDiffusion3Pipeline.load_lora_weights` reads
`text_encoder.` / `text_encoder_2.` plus the same module names.

| keras-hub layer (`encoder.encoder_layers[i]`) | transformers module (`text_model.encoder.layers.{i}.`) | target    |
|-----------------------------------------------|---------------------------------------------------------|-----------|
| `.attention._query_dense`                     | `self_attn.q_proj`                                      | attention |
| `.attention._key_dense`                       | `self_attn.k_proj`                                      | attention |
| `.attention._value_dense`                     | `self_attn.v_proj`                                      | attention |
| `.attention._output_dense`                    | `self_attn.out_proj`                                    | attention |
| `.dense_1`                                    | `mlp.fc1`                                               | mlp       |
| `.dense_2`                                    | `mlp.fc2`                                               | mlp       |

The attention projections are `EinsumDense` layers with the heads as an
axis; `EinsumDenseLoRA` gives them the plain-matrix LoRA these names
stand for. The MLPs are `Dense` layers and take Keras' own LoRA.
"""

from studio.interop.text_encoder_names import DIFFUSERS_PREFIX, HUGGING_FACE, LAYERS
from studio.lora.einsum_dense_lora import EinsumDenseLoRA
from studio.lora.sdxl_lora_targets import TEXT_ENCODER_1_PREFIX, TEXT_ENCODER_2_PREFIX

# kohya's prefix of each SD3 text encoder (`SD3Backbone` attribute -> prefix).
SD3_TEXT_ENCODER_PREFIXES = {"clip_l": TEXT_ENCODER_1_PREFIX, "clip_g": TEXT_ENCODER_2_PREFIX}
# diffusers' component of each (`text_encoder.text_model....lora_A.weight`).
SD3_DIFFUSERS_TEXT_ENCODERS = {"clip_l": "text_encoder", "clip_g": "text_encoder_2"}

_ATTENTION = (
    ("_query_dense", "self_attn.q_proj"),
    ("_key_dense", "self_attn.k_proj"),
    ("_value_dense", "self_attn.v_proj"),
    ("_output_dense", "self_attn.out_proj"),
)
_MLP = (("dense_1", "mlp.fc1"), ("dense_2", "mlp.fc2"))
# Where transformers numbers CLIP's layers, and the module names within a
# layer (`self_attn.q_proj`, ..., `mlp.fc2`).
CLIP_LAYERS = DIFFUSERS_PREFIX + LAYERS[HUGGING_FACE]
CLIP_LORA_MODULES = tuple(module for _, module in _ATTENTION + _MLP)


def sd3_clip_lora_targets(encoder, mlp=False):
    """A keras-hub `CLIPTextEncoder`'s layers LoRA adapts, by transformers module name.

    Args:
        encoder: `SD3Backbone.clip_l` or `.clip_g`.
        mlp: also the MLPs (`mlp.fc1`, `mlp.fc2`), besides the attention's
            four projections.

    Returns:
        dict module name (`text_model.encoder.layers.0.self_attn.q_proj`,
        ...) -> `EinsumDenseLoRA` (attention) or `keras.layers.Dense` (MLP),
        in layer order.
    """
    targets = {}
    for index, block in enumerate(encoder.encoder_layers):
        for attribute, module in _ATTENTION:
            targets[f"{CLIP_LAYERS}.{index}.{module}"] = EinsumDenseLoRA(
                getattr(block.attention, attribute)
            )
        if mlp:
            for attribute, module in _MLP:
                targets[f"{CLIP_LAYERS}.{index}.{module}"] = getattr(block, attribute)
    return targets
