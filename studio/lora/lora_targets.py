"""Which dense layers LoRA adapts, and the diffusers / kohya names other tools know them by.

A LoRA file is only useful if other tools (A1111, ComfyUI, diffusers,
kohya's scripts) find each pair of matrices a home. They name a pair after
the diffusers module it adapts, with dots turned into underscores and a
prefix: `lora_unet_` for UNet modules, `lora_te_` for the text encoder's.
This module maps our layers to those names by walking the networks, so a
name never depends on Keras' automatic layer names. The names come from
the importers' tables (`studio.interop.unet_names`,
`studio.interop.text_encoder_names`), so a LoRA file and an imported
model agree on every module by construction; the tables below say what
they hold.

UNet blocks. Our UNet names its spatial transformers after their level and
place (`down{l}_attention{i}`, `mid_attention`, `up{l}_attention{i}`); the
way up counts levels from the bottom in diffusers (`up_blocks.0` is the
deepest level), so our `up{l}` is diffusers' `up_blocks.{levels - 1 - l}`:

| our layer (`unet.get_layer(...)`)     | diffusers module                       |
|---------------------------------------|----------------------------------------|
| `down{l}_attention{i}`                | `down_blocks.{l}.attentions.{i}`       |
| `mid_attention`                       | `mid_block.attentions.0`               |
| `up{l}_attention{i}`                  | `up_blocks.{L-1-l}.attentions.{i}`     |

Inside a spatial transformer (`B` is one of the blocks above):

| our layer path                                             | diffusers module                                 | target         |
|------------------------------------------------------------|--------------------------------------------------|----------------|
| `B.transformer_blocks[j].self_attention.query_projection`  | `B.transformer_blocks.{j}.attn1.to_q`            | attention      |
| `B.transformer_blocks[j].self_attention.key_projection`    | `B.transformer_blocks.{j}.attn1.to_k`            | attention      |
| `B.transformer_blocks[j].self_attention.value_projection`  | `B.transformer_blocks.{j}.attn1.to_v`            | attention      |
| `B.transformer_blocks[j].self_attention.output_projection` | `B.transformer_blocks.{j}.attn1.to_out.0`        | attention      |
| `B.transformer_blocks[j].cross_attention.*` (same four)    | `B.transformer_blocks.{j}.attn2.*` (same four)   | attention      |
| `B.transformer_blocks[j].geglu_projection`                 | `B.transformer_blocks.{j}.ff.net.0.proj`         | feed-forward   |
| `B.transformer_blocks[j].output_projection`                | `B.transformer_blocks.{j}.ff.net.2`              | feed-forward   |

Text encoder (`text_encoder.encoder_layers[i]`):

| our layer path        | diffusers / transformers module                     | target    |
|-----------------------|-----------------------------------------------------|-----------|
| `.query_dense`        | `text_model.encoder.layers.{i}.self_attn.q_proj`    | attention |
| `.key_dense`          | `text_model.encoder.layers.{i}.self_attn.k_proj`    | attention |
| `.value_dense`        | `text_model.encoder.layers.{i}.self_attn.v_proj`    | attention |
| `.output_dense`       | `text_model.encoder.layers.{i}.self_attn.out_proj`  | attention |
| `.intermediate_dense` | `text_model.encoder.layers.{i}.mlp.fc1`             | mlp       |
| `.mlp_output_dense`   | `text_model.encoder.layers.{i}.mlp.fc2`             | mlp       |

The spatial transformers' `proj_in` / `proj_out` are 1x1 convolutions in
SD 1.x and are not adapted. Kohya's key for a module is the prefix and the
module name with every `.` replaced by `_`:
`down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q` ->
`lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q`.
"""

import re

from studio.interop.text_encoder_names import DIFFUSERS_PREFIX
from studio.interop.text_encoder_names import HUGGING_FACE
from studio.interop.text_encoder_names import HUGGING_FACE_LAYER
from studio.interop.text_encoder_names import KOHYA_TEXT_ENCODER_PREFIX
from studio.interop.text_encoder_names import LAYERS
from studio.interop.unet_names import ATTENTION
from studio.interop.unet_names import KOHYA_UNET_PREFIX
from studio.interop.unet_names import TRANSFORMER
from studio.interop.unet_names import TRANSFORMER_BLOCK
from studio.interop.unet_names import unet_block_rows
from studio.interop.weight_transfer import LINEAR

UNET_PREFIX = KOHYA_UNET_PREFIX
TEXT_ENCODER_PREFIX = KOHYA_TEXT_ENCODER_PREFIX
# Groups of the text encoder's projections, by the start of their names.
TEXT_ATTENTION = "self_attn."
TEXT_MLP = "mlp."
_BLOCK_PATTERN = re.compile(r"(down|up)(\d+)_attention(\d+)|mid_attention")


def diffusers_block_name(layer_name, num_levels):
    """The diffusers name of one of our UNet's spatial transformers.

    Args:
        layer_name: `"down{l}_attention{i}"`, `"mid_attention"` or
            `"up{l}_attention{i}"`.
        num_levels: the UNet's number of levels (`len(block_channels)`).

    Returns:
        e.g. `"down_blocks.0.attentions.1"`, `"mid_block.attentions.0"`.

    Raises:
        ValueError: for another name, or a level the UNet does not have.
    """
    match = _BLOCK_PATTERN.fullmatch(layer_name)
    if match is not None:
        # The smallest UNet with attention everywhere that has this block.
        index = int(match.group(3) or 0)
        blocks = _transformer_blocks([0] * num_levels, index + 1, [True] * num_levels)
        if layer_name in blocks:
            return blocks[layer_name]
    raise ValueError(
        "Expected a UNet spatial-transformer name such as 'down0_attention1', "
        f"'mid_attention' or 'up2_attention0' of a UNet with {num_levels} levels. "
        f"Received: {layer_name!r}"
    )


def _transformer_blocks(block_channels, layers_per_block, attention_levels):
    """Dict our spatial transformers' names -> diffusers', in graph order."""
    return {
        ours: diffusers
        for ours, diffusers, _, what in unet_block_rows(
            block_channels, layers_per_block, attention_levels
        )
        if what == TRANSFORMER
    }


def _projection_names(feed_forward):
    """`(diffusers name in a transformer block, our attribute path)` of its dense layers."""
    names = []
    for ours, theirs, what in TRANSFORMER_BLOCK:
        if what is ATTENTION:
            names += [(f"{theirs}.{name}", (ours, attribute)) for attribute, name, _ in ATTENTION]
        elif what == LINEAR and feed_forward:
            names.append((theirs, (ours,)))
    return names


def unet_lora_module_names(
    block_channels,
    layers_per_block,
    attention_levels,
    transformer_depth=1,
    feed_forward=False,
):
    """The diffusers module names LoRA adapts in a UNet of this config, without building it.

    Args:
        block_channels, layers_per_block, attention_levels,
        transformer_depth: the `UNet` config.
        feed_forward: also the feed-forward projections.

    Returns:
        list of str, in our layers' order.
    """
    blocks = _transformer_blocks(block_channels, layers_per_block, attention_levels)
    return [
        f"{block}.transformer_blocks.{depth}.{name}"
        for block in blocks.values()
        for depth in range(transformer_depth)
        for name, _ in _projection_names(feed_forward)
    ]


def unet_lora_targets(unet, feed_forward=False):
    """The UNet's dense layers LoRA adapts, by diffusers module name.

    Args:
        unet: a `studio.models.UNet`.
        feed_forward: also the transformer blocks' feed-forward projections
            (`ff.net.0.proj`, `ff.net.2`), besides the attention projections.

    Returns:
        dict diffusers module name -> `keras.layers.Dense`, in graph order.
    """
    targets = {}
    blocks = _transformer_blocks(unet.block_channels, unet.layers_per_block, unet.attention_levels)
    for block_name, prefix in blocks.items():
        block = unet.get_layer(block_name)
        for depth, transformer in enumerate(block.transformer_blocks):
            for name, attributes in _projection_names(feed_forward):
                layer = transformer
                for attribute in attributes:
                    layer = getattr(layer, attribute)
                targets[f"{prefix}.transformer_blocks.{depth}.{name}"] = layer
    return targets


def text_encoder_lora_targets(text_encoder, mlp=False):
    """The text encoder's dense layers LoRA adapts, by transformers module name.

    Args:
        text_encoder: a `studio.models.CLIPTextEncoder`.
        mlp: also the MLP projections (`mlp.fc1`, `mlp.fc2`), besides the
            attention projections.

    Returns:
        dict module name (`text_model.encoder.layers.{i}.self_attn.q_proj`,
        ...) -> `keras.layers.Dense`.
    """
    groups = (TEXT_ATTENTION, TEXT_MLP) if mlp else (TEXT_ATTENTION,)
    layers = DIFFUSERS_PREFIX + LAYERS[HUGGING_FACE]
    return {
        f"{layers}.{index}.{name}": getattr(layer, attribute)
        for index, layer in enumerate(text_encoder.encoder_layers)
        for attribute, name, kind in HUGGING_FACE_LAYER
        if kind == LINEAR and name.startswith(groups)
    }


def kohya_name(prefix, module_name):
    """Kohya's name of a module: `kohya_name("lora_unet", "mid_block.attentions.0...")`.

    Args:
        prefix: `UNET_PREFIX` or `TEXT_ENCODER_PREFIX`.
        module_name: the diffusers / transformers module name.

    Returns:
        `prefix + "_" + module_name` with dots replaced by underscores.
    """
    return f"{prefix}_{module_name.replace('.', '_')}"
