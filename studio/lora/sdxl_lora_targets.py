"""Which dense layers of an SDXL backbone LoRA adapts, by the kohya names of SDXL LoRA files.

kohya's sd-scripts name an SDXL LoRA's UNet modules after the original
(SGM, LDM-style) layout of `sd_xl_base_1.0.safetensors`, not after
diffusers' blocks, and its text encoders `te1` (CLIP ViT-L) and `te2`
(OpenCLIP bigG, in the Hugging Face names of diffusers' `text_encoder_2`).
AUTOMATIC1111/Forge and ComfyUI read these names, and diffusers'
`load_lora_weights` maps them to its own blocks
(`_maybe_map_sgm_blocks_to_diffusers`, from the UNet's `layers_per_block`).
The block names come from `studio.interop.unet_names` (the importers'
table), the layers inside from `studio.lora.lora_targets`:

| our layer (`unet.get_layer`) | diffusers block                    | SGM block (kohya name) |
|------------------------------|------------------------------------|------------------------|
| `down{l}_attention{i}`       | `down_blocks.{l}.attentions.{i}`   | `input_blocks.{n}.1`   |
| `mid_attention`              | `mid_block.attentions.0`           | `middle_block.1`       |
| `up{l}_attention{i}`         | `up_blocks.{L-1-l}.attentions.{i}` | `output_blocks.{n}.1`  |

e.g. `down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q` of
SDXL base is `lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`;
`text_model.encoder.layers.0.self_attn.q_proj` of bigG is
`lora_te2_text_model_encoder_layers_0_self_attn_q_proj`.
"""

from studio.interop.unet_names import TRANSFORMER, unet_blocks
from studio.lora.lora_targets import (
    UNET_PREFIX,
    kohya_name,
    text_encoder_lora_targets,
    unet_lora_targets,
)

# kohya's prefixes of SDXL's two text encoders (SD 1.x/2.x's one is `lora_te`).
TEXT_ENCODER_1_PREFIX = "lora_te1"
TEXT_ENCODER_2_PREFIX = "lora_te2"


def sdxl_unet_lora_targets(unet, feed_forward=False):
    """SDXL's UNet layers LoRA adapts, by SGM module name.

    Args:
        unet: the `UNet` of an `SDXLBackbone`.
        feed_forward: also the transformer blocks' feed-forward projections.

    Returns:
        dict SGM module name (`input_blocks.4.1.transformer_blocks.0.attn1.to_q`,
        ...) -> `keras.layers.Dense`, in graph order.
    """
    blocks = [
        (f"{diffusers}.", f"{sgm}.")
        for _, diffusers, sgm, what in unet_blocks(unet)
        if what == TRANSFORMER
    ]
    targets = {}
    for module, layer in unet_lora_targets(unet, feed_forward).items():
        for diffusers, sgm in blocks:
            if module.startswith(diffusers):
                targets[sgm + module[len(diffusers):]] = layer
                break
    return targets


def sdxl_lora_targets(backbone, feed_forward=True, text_encoders=True):
    """Every layer an SDXL LoRA file may name, by kohya name.

    Args:
        backbone: an `SDXLBackbone`.
        feed_forward: also the UNet's feed-forward and the encoders' MLP
            projections.
        text_encoders: also both text encoders' layers (`lora_te1_`, `lora_te2_`).

    Returns:
        dict kohya name -> `keras.layers.Dense`: UNet, then ViT-L, then bigG.
    """
    targets = {
        kohya_name(UNET_PREFIX, module): layer
        for module, layer in sdxl_unet_lora_targets(backbone.unet, feed_forward).items()
    }
    if text_encoders:
        for prefix, encoder in (
            (TEXT_ENCODER_1_PREFIX, backbone.text_encoder),
            (TEXT_ENCODER_2_PREFIX, backbone.text_encoder_2),
        ):
            targets.update(
                {
                    kohya_name(prefix, module): layer
                    for module, layer in text_encoder_lora_targets(encoder, feed_forward).items()
                }
            )
    return targets
