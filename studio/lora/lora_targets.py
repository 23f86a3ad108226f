"""Which dense layers LoRA adapts, and the diffusers / kohya names other tools know them by.

A LoRA file is only useful if other tools (A1111, ComfyUI, diffusers,
kohya's scripts) find each pair of matrices a home. They name a pair after
the diffusers module it adapts, with dots turned into underscores and a
prefix: `lora_unet_` for UNet modules, `lora_te_` for the text encoder's.
This module maps our layers to those names by walking the networks, so a
name never depends on Keras' automatic layer names.

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

UNET_PREFIX = "lora_unet"
TEXT_ENCODER_PREFIX = "lora_te"
# Our attribute -> diffusers' name, for the four projections of an attention.
ATTENTION_PROJECTIONS = (
    ("query_projection", "to_q"),
    ("key_projection", "to_k"),
    ("value_projection", "to_v"),
    ("output_projection", "to_out.0"),
)
# diffusers' `attn1` attends to the image itself, `attn2` to the text.
ATTENTIONS = (("self_attention", "attn1"), ("cross_attention", "attn2"))
FEED_FORWARD_PROJECTIONS = (
    ("geglu_projection", "ff.net.0.proj"),
    ("output_projection", "ff.net.2"),
)
TEXT_ATTENTION_PROJECTIONS = (
    ("query_dense", "self_attn.q_proj"),
    ("key_dense", "self_attn.k_proj"),
    ("value_dense", "self_attn.v_proj"),
    ("output_dense", "self_attn.out_proj"),
)
TEXT_MLP_PROJECTIONS = (
    ("intermediate_dense", "mlp.fc1"),
    ("mlp_output_dense", "mlp.fc2"),
)
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
        ValueError: for another name.
    """
    match = _BLOCK_PATTERN.fullmatch(layer_name)
    if match is None:
        raise ValueError(
            "Expected a UNet spatial-transformer name such as 'down0_attention1', "
            f"'mid_attention' or 'up2_attention0'. Received: {layer_name!r}"
        )
    if layer_name == "mid_attention":
        return "mid_block.attentions.0"
    direction, level, index = match.group(1), int(match.group(2)), int(match.group(3))
    if direction == "down":
        return f"down_blocks.{level}.attentions.{index}"
    return f"up_blocks.{num_levels - 1 - level}.attentions.{index}"


def unet_block_names(block_channels, layers_per_block, attention_levels):
    """Our names of a UNet's spatial transformers, in graph order, from its config."""
    num_levels = len(block_channels)
    names = [
        f"down{level}_attention{index}"
        for level in range(num_levels)
        if attention_levels[level]
        for index in range(layers_per_block)
    ]
    names.append("mid_attention")
    names += [
        f"up{level}_attention{index}"
        for level in reversed(range(num_levels))
        if attention_levels[level]
        for index in range(layers_per_block + 1)
    ]
    return names


def _projection_names(feed_forward):
    names = [
        (f"{attention}.{diffusers}", (ours_attention, ours))
        for ours_attention, attention in ATTENTIONS
        for ours, diffusers in ATTENTION_PROJECTIONS
    ]
    if feed_forward:
        names += [(diffusers, (ours,)) for ours, diffusers in FEED_FORWARD_PROJECTIONS]
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
    num_levels = len(block_channels)
    return [
        f"{diffusers_block_name(block, num_levels)}.transformer_blocks.{depth}.{name}"
        for block in unet_block_names(block_channels, layers_per_block, attention_levels)
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
    num_levels = len(unet.block_channels)
    targets = {}
    for block_name in unet_block_names(
        unet.block_channels, unet.layers_per_block, unet.attention_levels
    ):
        block = unet.get_layer(block_name)
        prefix = diffusers_block_name(block_name, num_levels)
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
    projections = TEXT_ATTENTION_PROJECTIONS + (TEXT_MLP_PROJECTIONS if mlp else ())
    return {
        f"text_model.encoder.layers.{index}.{name}": getattr(layer, attribute)
        for index, layer in enumerate(text_encoder.encoder_layers)
        for attribute, name in projections
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
