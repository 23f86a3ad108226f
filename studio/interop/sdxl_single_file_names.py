"""SDXL's single-file (SGM) weight names, per network of an `SDXLBackbone`.

Stability AI's `sd_xl_base_1.0.safetensors` keeps the UNet and VAE under
LDM's names (`model.diffusion_model.`, with the added conditioning as
`label_emb.0`, and `first_stage_model.`), CLIP ViT-L in Hugging Face names
under `conditioner.embedders.0.transformer.text_model.`, and OpenCLIP
ViT-bigG in OpenCLIP's names under `conditioner.embedders.1.model.`
(`transformer.resblocks.N.attn.in_proj_weight` with query, key and value
stacked, `ln_1`, `mlp.c_fc`, ..., `ln_final`, `text_projection`).
"""

from studio.interop.text_encoder_names import (
    HUGGING_FACE,
    OPEN_CLIP,
    SGM_CLIP_PREFIX,
    SGM_OPEN_CLIP_PREFIX,
    text_encoder_weight_names,
)
from studio.interop.unet_names import LDM, unet_weight_names
from studio.interop.vae_names import vae_decoder_weight_names, vae_encoder_weight_names

SDXL_SINGLE_FILE_TABLES = {
    "text_encoder": lambda network: text_encoder_weight_names(
        network, HUGGING_FACE, SGM_CLIP_PREFIX
    ),
    "text_encoder_2": lambda network: text_encoder_weight_names(
        network, OPEN_CLIP, SGM_OPEN_CLIP_PREFIX
    ),
    "unet": lambda network: unet_weight_names(network, LDM),
    "vae_encoder": lambda network: vae_encoder_weight_names(network, LDM),
    "vae_decoder": lambda network: vae_decoder_weight_names(network, LDM),
}


def sdxl_single_file_weight_names(network, component):
    """The `(keras_path, torch_name, kind)` table of one SDXL network in a single file.

    Args:
        network: the backbone's network named `component`.
        component: one of `SDXLBackbone.component_names`.

    Raises:
        ValueError: an unknown component.
    """
    if component not in SDXL_SINGLE_FILE_TABLES:
        raise ValueError(
            f"`component` must be one of {sorted(SDXL_SINGLE_FILE_TABLES)}. "
            f"Received: component={component!r}"
        )
    return SDXL_SINGLE_FILE_TABLES[component](network)
