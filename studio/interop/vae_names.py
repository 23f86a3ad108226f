"""The VAE's weight names: our encoder and decoder, diffusers', original LDM's.

One PyTorch `AutoencoderKL` holds both halves; we keep a `VAEEncoder`
(whose last layer is LDM's `quant_conv`) and a `VAEDecoder` (whose first
is `post_quant_conv`). `vae_encoder_weight_names` and
`vae_decoder_weight_names` return their tables for `weight_transfer`.

The decoder's levels are numbered from the deepest in diffusers
(`up_blocks.0`) and from the image side in LDM (`up.{levels - 1}`), where
ours count like diffusers'. The mid-block attention's projections are
Linear in diffusers and 1x1 convolutions in LDM (ours are 1x1 convs).
"""

from studio.interop.weight_transfer import CONV, LINEAR, NORM

DIFFUSERS = "diffusers"
LDM = "ldm"
LAYOUTS = (DIFFUSERS, LDM)
# The VAE's tensors in an original-LDM single file are under this prefix.
LDM_VAE_PREFIX = "first_stage_model."

# Sub-layers of a `VAEResidualBlock`: ours, diffusers', LDM's, kind. The
# shortcut exists only where the block changes the channel count.
RESIDUAL_BLOCK = (
    ("norm_1", "norm1", "norm1", NORM),
    ("conv_1", "conv1", "conv1", CONV),
    ("norm_2", "norm2", "norm2", NORM),
    ("conv_2", "conv2", "conv2", CONV),
    ("shortcut", "conv_shortcut", "nin_shortcut", CONV),
)
# Sub-layers of a `VAEAttentionBlock`: ours, diffusers' (kind), LDM's (kind).
ATTENTION_BLOCK = (
    ("norm", ("group_norm", NORM), ("norm", NORM)),
    ("query", ("to_q", LINEAR), ("q", CONV)),
    ("key", ("to_k", LINEAR), ("k", CONV)),
    ("value", ("to_v", LINEAR), ("v", CONV)),
    ("output_projection", ("to_out.0", LINEAR), ("proj_out", CONV)),
)
# diffusers before 0.14 named the attention's modules so; files written
# then are still about.
DEPRECATED_DIFFUSERS_ATTENTION = {
    "query": "to_q",
    "key": "to_k",
    "value": "to_v",
    "proj_attn": "to_out.0",
}
RESIDUAL = "residual"
ATTENTION = "attention"


def vae_encoder_blocks(encoder):
    """Where each block of our `VAEEncoder` is: `(ours, diffusers, LDM, what)`."""
    num_levels = len(encoder.block_channels)
    rows = [("input_conv", "encoder.conv_in", "encoder.conv_in", CONV)]
    for level in range(num_levels):
        for index in range(encoder.layers_per_block):
            rows.append(
                (
                    f"down_{level}_residual_{index}",
                    f"encoder.down_blocks.{level}.resnets.{index}",
                    f"encoder.down.{level}.block.{index}",
                    RESIDUAL,
                )
            )
        if level < num_levels - 1:
            rows.append(
                (
                    f"down_{level}_downsample",
                    f"encoder.down_blocks.{level}.downsamplers.0.conv",
                    f"encoder.down.{level}.downsample.conv",
                    CONV,
                )
            )
    rows += _mid_blocks("encoder")
    rows += [
        ("output_norm", "encoder.conv_norm_out", "encoder.norm_out", NORM),
        ("output_conv", "encoder.conv_out", "encoder.conv_out", CONV),
        ("moments_conv", "quant_conv", "quant_conv", CONV),
    ]
    return rows


def vae_decoder_blocks(decoder):
    """Where each block of our `VAEDecoder` is: `(ours, diffusers, LDM, what)`."""
    num_levels = len(decoder.block_channels)
    rows = [
        ("latents_conv", "post_quant_conv", "post_quant_conv", CONV),
        ("input_conv", "decoder.conv_in", "decoder.conv_in", CONV),
    ]
    rows += _mid_blocks("decoder")
    for level in range(num_levels):
        ldm_level = num_levels - 1 - level
        for index in range(decoder.layers_per_block + 1):
            rows.append(
                (
                    f"up_{level}_residual_{index}",
                    f"decoder.up_blocks.{level}.resnets.{index}",
                    f"decoder.up.{ldm_level}.block.{index}",
                    RESIDUAL,
                )
            )
        if level < num_levels - 1:
            rows.append(
                (
                    f"up_{level}_conv",
                    f"decoder.up_blocks.{level}.upsamplers.0.conv",
                    f"decoder.up.{ldm_level}.upsample.conv",
                    CONV,
                )
            )
    rows += [
        ("output_norm", "decoder.conv_norm_out", "decoder.norm_out", NORM),
        ("output_conv", "decoder.conv_out", "decoder.conv_out", CONV),
    ]
    return rows


def _mid_blocks(half):
    return [
        ("mid_residual_0", f"{half}.mid_block.resnets.0", f"{half}.mid.block_1", RESIDUAL),
        ("mid_attention", f"{half}.mid_block.attentions.0", f"{half}.mid.attn_1", ATTENTION),
        ("mid_residual_1", f"{half}.mid_block.resnets.1", f"{half}.mid.block_2", RESIDUAL),
    ]


def vae_encoder_weight_names(encoder, layout):
    """The `VAEEncoder`'s table: `(keras_path, torch_name, kind)` rows.

    Args:
        encoder: a `studio.models.VAEEncoder`.
        layout: `"diffusers"` (names in `vae/diffusion_pytorch_model.*`) or
            `"ldm"` (names in a single file, with `first_stage_model.`).
    """
    return _weight_names(encoder, vae_encoder_blocks(encoder), layout)


def vae_decoder_weight_names(decoder, layout):
    """The `VAEDecoder`'s table: `(keras_path, torch_name, kind)` rows.

    Args:
        decoder: a `studio.models.VAEDecoder`.
        layout: `"diffusers"` or `"ldm"`, as for `vae_encoder_weight_names`.
    """
    return _weight_names(decoder, vae_decoder_blocks(decoder), layout)


def rename_deprecated_attention_keys(tensors):
    """Returns `tensors` with pre-0.14 diffusers attention names renamed."""
    renamed = {}
    for key, value in tensors.items():
        parts = key.split(".")
        if "attentions" in parts and len(parts) >= 2:
            module = parts[-2]
            if module in DEPRECATED_DIFFUSERS_ATTENTION:
                parts[-2] = DEPRECATED_DIFFUSERS_ATTENTION[module]
                key = ".".join(parts)
        renamed[key] = value
    return renamed


def _weight_names(network, blocks, layout):
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {LAYOUTS}. Received: layout={layout!r}")
    prefix = LDM_VAE_PREFIX if layout == LDM else ""
    names = []
    for ours, diffusers_name, ldm_name, what in blocks:
        torch_name = prefix + (diffusers_name if layout == DIFFUSERS else ldm_name)
        if what == RESIDUAL:
            has_shortcut = network.get_layer(ours).shortcut is not None
            for sub, diffusers_sub, ldm_sub, kind in RESIDUAL_BLOCK:
                if sub != "shortcut" or has_shortcut:
                    sub_name = diffusers_sub if layout == DIFFUSERS else ldm_sub
                    names.append((f"{ours}.{sub}", f"{torch_name}.{sub_name}", kind))
        elif what == ATTENTION:
            for sub, diffusers_entry, ldm_entry in ATTENTION_BLOCK:
                sub_name, kind = diffusers_entry if layout == DIFFUSERS else ldm_entry
                names.append((f"{ours}.{sub}", f"{torch_name}.{sub_name}", kind))
        else:
            names.append((ours, torch_name, what))
    return names
