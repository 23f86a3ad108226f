"""The UNet's weight names: our layers, diffusers' modules, original LDM's.

`unet_weight_names(unet, layout)` walks our `UNet` level by level and
returns its table, `(keras_path, torch_name, kind)` rows for
`weight_transfer`. The walk is written once, from `UNET_BLOCKS` (where
each of our blocks lives in the two PyTorch layouts) and the templates of
the blocks' insides (`RESNET_BLOCK`, `SPATIAL_TRANSFORMER`,
`TRANSFORMER_BLOCK`, `ATTENTION`).

diffusers numbers blocks per level: `down_blocks.{level}.resnets.{i}`,
`up_blocks.{deepest first}...`. The original LDM code numbers the blocks
of each path in one sequence that counts the downsamplers too:
`input_blocks.0` is the input convolution, then each level has
`layers_per_block` blocks and (except the deepest) a downsampler;
`output_blocks` has `layers_per_block + 1` blocks per level, deepest
first, the upsampler inside the last one. Inside a numbered LDM block,
`.0` is the residual block and `.1` the transformer. SDXL's added
conditioning (pooled text and size ids) is `add_embedding` in diffusers
and `label_emb.0` in SGM's single files, whose UNet names are LDM's.
"""

from studio.interop.weight_transfer import CONV, LINEAR, NORM

DIFFUSERS = "diffusers"
LDM = "ldm"
LAYOUTS = (DIFFUSERS, LDM)
# The UNet's tensors in an original-LDM single file are under this prefix.
LDM_UNET_PREFIX = "model.diffusion_model."
# Kohya's LoRA files name a UNet module `lora_unet_` + its diffusers name
# with underscores for dots.
KOHYA_UNET_PREFIX = "lora_unet"

# Sub-layers of a `UNetResnetBlock`: ours, diffusers', LDM's, kind. The
# shortcut exists only where the block changes the channel count.
RESNET_BLOCK = (
    ("norm1", "norm1", "in_layers.0", NORM),
    ("conv1", "conv1", "in_layers.2", CONV),
    ("embedding_projection", "time_emb_proj", "emb_layers.1", LINEAR),
    ("norm2", "norm2", "out_layers.0", NORM),
    ("conv2", "conv2", "out_layers.3", CONV),
    ("shortcut", "conv_shortcut", "skip_connection", CONV),
)
# Sub-layers of a `UNetCrossAttention` (same names in both layouts).
ATTENTION = (
    ("query_projection", "to_q", LINEAR),
    ("key_projection", "to_k", LINEAR),
    ("value_projection", "to_v", LINEAR),
    ("output_projection", "to_out.0", LINEAR),
)
# Sub-layers of a `UNetTransformerBlock` (same names in both layouts); the
# two attentions expand with `ATTENTION`.
TRANSFORMER_BLOCK = (
    ("norm1", "norm1", NORM),
    ("self_attention", "attn1", ATTENTION),
    ("norm2", "norm2", NORM),
    ("cross_attention", "attn2", ATTENTION),
    ("norm3", "norm3", NORM),
    ("geglu_projection", "ff.net.0.proj", LINEAR),
    ("output_projection", "ff.net.2", LINEAR),
)
# Sub-layers of a `UNetSpatialTransformer` (same names in both layouts).
# Its projections are 1x1 convs (SD 1.x) or Linear (SD 2.x), like ours.
PROJECTION = "projection"
SPATIAL_TRANSFORMER = (
    ("norm", "norm", NORM),
    ("input_projection", "proj_in", PROJECTION),
    ("transformer_blocks", "transformer_blocks", TRANSFORMER_BLOCK),
    ("output_projection", "proj_out", PROJECTION),
)
RESNET = "resnet"
TRANSFORMER = "transformer"


def unet_blocks(unet):
    """Where each of our UNet's blocks is: `(ours, diffusers, LDM, what)` rows.

    `what` is a kind of `weight_transfer` for single layers, or `RESNET` /
    `TRANSFORMER` for blocks that expand with their templates.
    """
    return unet_block_rows(
        unet.block_channels,
        unet.layers_per_block,
        unet.attention_levels,
        added_conditioning=unet.pooled_text_dim is not None,
    )


def unet_block_rows(block_channels, layers_per_block, attention_levels, added_conditioning=False):
    """`unet_blocks` from a `UNet` config, without building the network.

    Args:
        block_channels, layers_per_block, attention_levels: the `UNet`
            config.
        added_conditioning: whether the UNet has SDXL's added conditioning
            (its `pooled_text_dim` is set).

    Returns:
        `(ours, diffusers, LDM, what)` rows, in graph order.
    """
    per_level = layers_per_block
    num_levels = len(block_channels)
    rows = [
        ("time_dense_in", "time_embedding.linear_1", "time_embed.0", LINEAR),
        ("time_dense_out", "time_embedding.linear_2", "time_embed.2", LINEAR),
    ]
    if added_conditioning:
        rows += [
            ("added_conditioning.dense_in", "add_embedding.linear_1", "label_emb.0.0", LINEAR),
            ("added_conditioning.dense_out", "add_embedding.linear_2", "label_emb.0.2", LINEAR),
        ]
    rows += [
        ("input_conv", "conv_in", "input_blocks.0.0", CONV),
    ]
    for level in range(num_levels):
        first = 1 + level * (per_level + 1)
        for index in range(per_level):
            rows += _numbered_block(
                f"down{level}", f"down_blocks.{level}", f"input_blocks.{first + index}",
                index, attention_levels[level],
            )
        if level < num_levels - 1:
            rows.append(
                (
                    f"down{level}_downsample.conv",
                    f"down_blocks.{level}.downsamplers.0.conv",
                    f"input_blocks.{first + per_level}.0.op",
                    CONV,
                )
            )
    rows += [
        ("mid_resnet0", "mid_block.resnets.0", "middle_block.0", RESNET),
        ("mid_attention", "mid_block.attentions.0", "middle_block.1", TRANSFORMER),
        ("mid_resnet1", "mid_block.resnets.1", "middle_block.2", RESNET),
    ]
    for up_index, level in enumerate(reversed(range(num_levels))):
        attention = attention_levels[level]
        up = f"up_blocks.{up_index}"
        for index in range(per_level + 1):
            block = f"output_blocks.{up_index * (per_level + 1) + index}"
            rows += _numbered_block(f"up{level}", up, block, index, attention)
        if level > 0:
            # In the level's last LDM block, after its resnet and transformer.
            rows.append(
                (
                    f"up{level}_upsample.conv",
                    f"{up}.upsamplers.0.conv",
                    f"{block}.{2 if attention else 1}.conv",
                    CONV,
                )
            )
    rows += [
        ("output_norm", "conv_norm_out", "out.0", NORM),
        ("output_conv", "conv_out", "out.2", CONV),
    ]
    return rows


def _numbered_block(ours, diffusers, ldm, index, attention):
    """Rows of one block of a level: its resnet, then (with attention) its transformer.

    Args:
        ours: the level's prefix, e.g. `"down0"`.
        diffusers: the level's diffusers module, e.g. `"down_blocks.0"`.
        ldm: the LDM block, e.g. `"input_blocks.1"`.
        index: the block's index in the level.
        attention: whether the level has transformers.
    """
    rows = [(f"{ours}_resnet{index}", f"{diffusers}.resnets.{index}", f"{ldm}.0", RESNET)]
    if attention:
        rows.append(
            (f"{ours}_attention{index}", f"{diffusers}.attentions.{index}", f"{ldm}.1", TRANSFORMER)
        )
    return rows


def unet_weight_names(unet, layout):
    """The UNet's table for `weight_transfer`: `(keras_path, torch_name, kind)`.

    Args:
        unet: a `studio.models.UNet`.
        layout: `"diffusers"` (names in `unet/diffusion_pytorch_model.*`) or
            `"ldm"` (names in a single file, with `model.diffusion_model.`).

    Returns:
        A list of rows.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {LAYOUTS}. Received: layout={layout!r}")
    prefix = LDM_UNET_PREFIX if layout == LDM else ""
    projection = CONV if unet.transformer_projection == "conv" else LINEAR
    names = []
    for ours, diffusers_name, ldm_name, what in unet_blocks(unet):
        torch_name = prefix + (diffusers_name if layout == DIFFUSERS else ldm_name)
        if what == RESNET:
            has_shortcut = unet.get_layer(ours).shortcut is not None
            for sub, diffusers_sub, ldm_sub, kind in RESNET_BLOCK:
                if sub != "shortcut" or has_shortcut:
                    sub_name = diffusers_sub if layout == DIFFUSERS else ldm_sub
                    names.append((f"{ours}.{sub}", f"{torch_name}.{sub_name}", kind))
        elif what == TRANSFORMER:
            depth = unet.get_layer(ours).depth
            names.extend(_spatial_transformer_names(ours, torch_name, projection, depth))
        else:
            names.append((ours, torch_name, what))
    return names


def _spatial_transformer_names(ours, torch_name, projection, depth):
    """Rows of one `UNetSpatialTransformer`, from the templates."""
    names = []
    for sub, torch_sub, what in SPATIAL_TRANSFORMER:
        if what is TRANSFORMER_BLOCK:
            for index in range(depth):
                names.extend(
                    _transformer_block_names(
                        f"{ours}.{sub}.{index}", f"{torch_name}.{torch_sub}.{index}"
                    )
                )
        else:
            kind = projection if what == PROJECTION else what
            names.append((f"{ours}.{sub}", f"{torch_name}.{torch_sub}", kind))
    return names


def _transformer_block_names(ours, torch_name):
    """Rows of one `UNetTransformerBlock`, from the templates."""
    names = []
    for sub, torch_sub, what in TRANSFORMER_BLOCK:
        if what is ATTENTION:
            for attention_sub, torch_attention_sub, kind in ATTENTION:
                names.append(
                    (
                        f"{ours}.{sub}.{attention_sub}",
                        f"{torch_name}.{torch_sub}.{torch_attention_sub}",
                        kind,
                    )
                )
        else:
            names.append((f"{ours}.{sub}", f"{torch_name}.{torch_sub}", what))
    return names
