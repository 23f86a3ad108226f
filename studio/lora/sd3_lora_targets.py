"""Which dense layers of keras-hub's SD3 MMDiT LoRA adapts, by the SD3 module names kohya and ComfyUI use.

keras-hub's MMDiT keeps SD3's original layout (Stability AI's
`joint_blocks`), with its fused q/k/v, so each target is one module of the
original checkpoint; kohya's key is `lora_unet_` plus the module name with
dots as underscores (`lora_unet_joint_blocks_0_x_block_attn_qkv`), which
ComfyUI reads. diffusers splits the fused qkv into `to_q` / `to_k` / `to_v`
(`add_q_proj` ... for the context stream); that split belongs to the file
writer, not to the targets.

| keras-hub layer (`mmdit.joint_blocks[i]`)  | SD3 module                              | target    |
|--------------------------------------------|-----------------------------------------|-----------|
| `.x_block.attention_qkv`                   | `joint_blocks.{i}.x_block.attn.qkv`     | attention |
| `.x_block.attention_proj`                  | `joint_blocks.{i}.x_block.attn.proj`    | attention |
| `.x_block.mlp.dense1` / `.dense2`          | `joint_blocks.{i}.x_block.mlp.fc1/fc2`  | mlp       |
| `.context_block.*` (same)                  | `joint_blocks.{i}.context_block.*`      | as above  |

The last block's context stream has only its qkv: SD3 discards the
context after the last attention, so it has no projection and no MLP.
"""

from studio.interop.sd3_mmdit_names import mmdit_modules

# SD3 module names (within a stream) LoRA adapts: attention first.
ATTENTION_MODULES = ("attn.qkv", "attn.proj")
MLP_MODULES = ("mlp.fc1", "mlp.fc2")


def mmdit_lora_targets(mmdit, mlp=False):
    """The MMDiT's dense layers LoRA adapts, by SD3 module name.

    Args:
        mmdit: keras-hub's `MMDiT` (`SD3Backbone.mmdit`).
        mlp: also the MLPs (`mlp.fc1`, `mlp.fc2`), besides the attention's
            `qkv` and `proj`.

    Returns:
        dict module name (`joint_blocks.0.x_block.attn.qkv`, ...) ->
        `keras.layers.Dense`, in graph order (the name table's
        `studio.interop.sd3_mmdit_names`).
    """
    kinds = ATTENTION_MODULES + MLP_MODULES if mlp else ATTENTION_MODULES
    return {
        module: layer
        for module, layer in mmdit_modules(mmdit).items()
        if module.startswith("joint_blocks.") and module.split(".", 3)[3] in kinds
    }
