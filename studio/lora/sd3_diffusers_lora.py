"""An SD3 LoRA in diffusers' names (`transformer.transformer_blocks.0.attn.to_q.lora_A.weight`).

`LoRAWeights` keeps an SD3 LoRA under kohya's names of SD3's own modules
(`lora_unet_joint_blocks_0_x_block_attn_qkv`), one LoRA per fused qkv.
diffusers' `SD3Transformer2DModel` (and its `train_dreambooth_lora_sd3.py`
files) splits that layer into `to_q` / `to_k` / `to_v`; a LoRA on the fused
layer, `delta = up @ down` with `up` `(3 * width, rank)`, is exactly three
LoRAs that share `down` and take a third of `up` each. diffusers' files have
no `alpha`: each module's `alpha / rank` is folded into its `lora_B`.
Both files are read by ComfyUI (its SD3 key map takes `lora_unet_*` and
`transformer.*` names).
"""

import os
import re

import numpy as np

from studio.errors import InvalidInputError
from studio.interop.sd3_mmdit_names import (
    DIFFUSERS_TRANSFORMER_PREFIX,
    KOHYA_MMDIT_PREFIX,
    diffusers_module,
)

_KOHYA_MODULE = re.compile(
    rf"^{KOHYA_MMDIT_PREFIX}_joint_blocks_(\d+)_(x_block|context_block)_"
    r"(attn_qkv|attn_proj|mlp_fc1|mlp_fc2)$"
)


def sd3_module_of_kohya(name):
    """SD3's module of a kohya MMDiT LoRA name (`..._x_block_attn_qkv` -> `joint_blocks.0.x_block.attn.qkv`).

    Raises:
        InvalidInputError: for a name that is not an MMDiT attention or MLP module.
    """
    match = _KOHYA_MODULE.match(name)
    if match is None:
        raise InvalidInputError(
            "Not a kohya SD3 MMDiT LoRA module (expected "
            f"'{KOHYA_MMDIT_PREFIX}_joint_blocks_<i>_<x_block|context_block>_<attn_qkv|attn_proj|"
            f"mlp_fc1|mlp_fc2>'). Received: {name!r}"
        )
    index, stream, module = match.groups()
    return f"joint_blocks.{index}.{stream}.{module.replace('_', '.', 1)}"


def diffusers_sd3_lora_tensors(lora_weights):
    """A `LoRAWeights` of an SD3 MMDiT as diffusers' LoRA tensors (float32, torch layouts).

    Args:
        lora_weights: a `LoRAWeights` with kohya SD3 module names
            (`LoRAWeights.from_backbone` of an `SD3Backbone`).

    Returns:
        dict `transformer.<module>.lora_A.weight` `(rank, in)` and
        `.lora_B.weight` `(out, rank)` -> array, with `alpha / rank` in `lora_B`.
    """
    tensors = {}
    for name, (down, up, alpha) in lora_weights.modules.items():
        rank = down.shape[0]
        up = up * np.float32(alpha / rank)
        targets = diffusers_module(sd3_module_of_kohya(name))
        if isinstance(targets, tuple):
            pieces = zip(targets, np.split(up, 3, axis=0))
        else:
            pieces = [(targets, up)]
        for module, part in pieces:
            key = f"{DIFFUSERS_TRANSFORMER_PREFIX}.{module}"
            tensors[f"{key}.lora_A.weight"] = np.ascontiguousarray(down, np.float32)
            tensors[f"{key}.lora_B.weight"] = np.ascontiguousarray(part, np.float32)
    return tensors


def save_diffusers_sd3_lora(lora_weights, path):
    """Writes `diffusers_sd3_lora_tensors` as a `.safetensors` file, atomically; returns `path`."""
    import safetensors.numpy

    from studio.files.atomic_write import write_file_atomically

    metadata = {str(key): str(value) for key, value in lora_weights.metadata.items()}
    data = safetensors.numpy.save(diffusers_sd3_lora_tensors(lora_weights), metadata=metadata)
    return write_file_atomically(os.fspath(path), data)
