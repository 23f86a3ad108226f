"""One table of SD3 MMDiT names: keras-hub layers, SD3's own modules, diffusers' modules.

SD3's original checkpoint (Stability AI's `joint_blocks`, which kohya's LoRA
names and ComfyUI's `diffusion_model.*` keys use) is the middle column;
keras-hub ported it layer by layer (its `convert_stable_diffusion_3_checkpoints`),
and diffusers' `SD3Transformer2DModel` renames it and splits the fused
q/k/v (ComfyUI's `mmdit_to_diffusers` map, read in both directions here).

Per joint block `i` (`mmdit.joint_blocks[i]`, SD3 `joint_blocks.{i}`,
diffusers `transformer_blocks.{i}`):

| keras-hub (`x_block` / `context_block`)   | SD3 module                  | diffusers (x / context)                     |
|-------------------------------------------|-----------------------------|---------------------------------------------|
| `.ada_layer_norm.dense`                   | `.adaLN_modulation.1`       | `norm1.linear` / `norm1_context.linear`     |
| `.attention_qkv`                          | `.attn.qkv`                 | `attn.to_{q,k,v}` / `attn.add_{q,k,v}_proj` |
| `.attention_proj`                         | `.attn.proj`                | `attn.to_out.0` / `attn.to_add_out`         |
| `.mlp.dense1`, `.mlp.dense2`              | `.mlp.fc1`, `.mlp.fc2`      | `ff.net.0.proj`, `ff.net.2` / `ff_context.*`|

The last block's context stream keeps only its modulation (2 vectors:
shift, scale) and qkv; diffusers' `AdaLayerNormContinuous` there, and in
`norm_out`, orders them scale, shift (`SWAPPED_SCALE_SHIFT`).
"""

# Block-level: (keras-hub attribute path, SD3 module, diffusers x module,
# diffusers context module). qkv is split by the writers (`QKV_SPLIT`).
BLOCK_MODULES = (
    (("ada_layer_norm", "dense"), "adaLN_modulation.1", "norm1.linear", "norm1_context.linear"),
    (("attention_qkv",), "attn.qkv", None, None),
    (("attention_proj",), "attn.proj", "attn.to_out.0", "attn.to_add_out"),
    (("mlp", "dense1"), "mlp.fc1", "ff.net.0.proj", "ff_context.net.0.proj"),
    (("mlp", "dense2"), "mlp.fc2", "ff.net.2", "ff_context.net.2"),
)
STREAMS = ("x_block", "context_block")

# The fused qkv's diffusers modules by stream, in the fused order (q, k, v).
QKV_SPLIT = {
    "x_block": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "context_block": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}

# Model-level: (keras-hub attribute path, SD3 module, diffusers module).
TOP_MODULES = (
    (("patch_embedding", "patch_embedding"), "x_embedder.proj", "pos_embed.proj"),
    (("context_embedding",), "context_embedder", "context_embedder"),
    (("vector_embedding", "dense1"), "y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1"),
    (("vector_embedding", "dense2"), "y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2"),
    (("timestep_embedding", "mlp", "dense1"), "t_embedder.mlp.0",
     "time_text_embed.timestep_embedder.linear_1"),
    (("timestep_embedding", "mlp", "dense2"), "t_embedder.mlp.2",
     "time_text_embed.timestep_embedder.linear_2"),
    (("output_ada_layer_norm", "dense"), "final_layer.adaLN_modulation.1", "norm_out.linear"),
    (("output_dense",), "final_layer.linear", "proj_out"),
)  # fmt: skip

# diffusers modules whose two modulation vectors are (scale, shift), not SD3's (shift, scale).
SWAPPED_SCALE_SHIFT = "norm_out.linear"
SWAPPED_LAST_CONTEXT = "norm1_context.linear"

# kohya's prefix for the MMDiT (ComfyUI maps `lora_unet_<module with _>` to
# `diffusion_model.<module>.weight`); diffusers' prefix for the transformer.
KOHYA_MMDIT_PREFIX = "lora_unet"
DIFFUSERS_TRANSFORMER_PREFIX = "transformer"


def keras_layer(root, path):
    """The layer at an attribute path (None where the model has none, as the last context block)."""
    layer = root
    for attribute in path:
        layer = getattr(layer, attribute, None)
        if layer is None:
            return None
    return layer


def mmdit_modules(mmdit):
    """Every weight layer of keras-hub's MMDiT by SD3 module name.

    Returns:
        dict SD3 module (`"joint_blocks.0.x_block.attn.qkv"`, `"context_embedder"`,
        ...) -> keras layer (`Dense` or `Conv2D`), blocks in order.
    """
    modules = {}
    for path, module, _ in TOP_MODULES:
        modules[module] = keras_layer(mmdit, path)
    for index, block in enumerate(mmdit.joint_blocks):
        for stream in STREAMS:
            for path, module, _, _ in BLOCK_MODULES:
                layer = keras_layer(getattr(block, stream), path)
                if layer is not None:
                    modules[f"joint_blocks.{index}.{stream}.{module}"] = layer
    return modules


def diffusers_module(sd3_module):
    """diffusers' module name(s) of an SD3 module: a str, or a (q, k, v) tuple for a fused qkv."""
    for _, module, diffusers in TOP_MODULES:
        if sd3_module == module:
            return diffusers
    _, index, stream, rest = sd3_module.split(".", 3)
    prefix = f"transformer_blocks.{index}."
    if rest == "attn.qkv":
        return tuple(prefix + name for name in QKV_SPLIT[stream])
    for _, module, x_name, context_name in BLOCK_MODULES:
        if rest == module:
            return prefix + (x_name if stream == "x_block" else context_name)
    raise ValueError(f"Not an SD3 MMDiT module. Received: {sd3_module!r}")


def kohya_module(sd3_module):
    """kohya's LoRA module name (`lora_unet_joint_blocks_0_x_block_attn_qkv`)."""
    return f"{KOHYA_MMDIT_PREFIX}_{sd3_module.replace('.', '_')}"
