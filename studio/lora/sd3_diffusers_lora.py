"""An SD3 LoRA in diffusers' names (`transformer.transformer_blocks.0.attn.to_q.lora_A.weight`).

`LoRAWeights` keeps an SD3 LoRA under kohya's names of SD3's own modules
(`lora_unet_joint_blocks_0_x_block_attn_qkv`), one LoRA per fused qkv.
diffusers' `SD3Transformer2DModel` (and its `train_dreambooth_lora_sd3.py`
files) splits that layer into `to_q` / `to_k` / `to_v`; a LoRA on the fused
layer, `delta = up @ down` with `up` `(3 * width, rank)`, is exactly three
LoRAs that share `down` and take a third of `up` each. diffusers' files have
no `alpha`: each module's `alpha / rank` is folded into its `lora_B`.
Both files are read by ComfyUI (its SD3 key map takes `lora_unet_*` and
`transformer.*` names). Reading a diffusers file back
(`sd3_lora_from_diffusers_tensors`) fuses q / k / v into one LoRA of three
times the rank: `down` stacks the three `lora_A`, `up` is block-diagonal in
the three `lora_B`, so `up @ down` is the three deltas stacked.
LoRA on CLIP-L / CLIP-G (kohya's `lora_te1_` / `lora_te2_`) is written
under diffusers' `text_encoder.` / `text_encoder_2.` and the transformers
module name, which `StableDiffusion3Pipeline.load_lora_weights` reads.
"""

import os
import re

import numpy as np

from studio.errors import InvalidInputError
from studio.interop.sd3_mmdit_names import (
    DIFFUSERS_TRANSFORMER_PREFIX,
    KOHYA_MMDIT_PREFIX,
    STREAMS,
    diffusers_module,
    kohya_module,
)
from studio.lora.sd3_clip_lora_targets import (
    CLIP_LAYERS,
    CLIP_LORA_MODULES,
    SD3_DIFFUSERS_TEXT_ENCODERS,
    SD3_TEXT_ENCODER_PREFIXES,
)

LORA_A_SUFFIX = ".lora_A.weight"
LORA_B_SUFFIX = ".lora_B.weight"
# SD3 module names (within a stream) a diffusers SD3 LoRA file may hold:
# attention and MLPs. (The modulations are left out: diffusers orders the
# last context block's as scale, shift, so a LoRA there needs more than names.)
_LORA_MODULES = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")

# kohya prefix (`lora_te1`) -> diffusers component (`text_encoder`).
_TEXT_ENCODER_COMPONENTS = {
    SD3_TEXT_ENCODER_PREFIXES[encoder]: component
    for encoder, component in SD3_DIFFUSERS_TEXT_ENCODERS.items()
}
_TEXT_ENCODER_PREFIXES_BY_COMPONENT = {
    component: prefix for prefix, component in _TEXT_ENCODER_COMPONENTS.items()
}
_KOHYA_TEXT_MODULE = re.compile(
    rf"^({'|'.join(_TEXT_ENCODER_COMPONENTS)})_{CLIP_LAYERS.replace('.', '_')}_(\d+)_"
    rf"({'|'.join(module.replace('.', '_') for module in CLIP_LORA_MODULES)})$"
)
_DIFFUSERS_TEXT_MODULE = re.compile(
    rf"^({'|'.join(_TEXT_ENCODER_COMPONENTS.values())})\.({CLIP_LAYERS}\.\d+\."
    rf"(?:{'|'.join(re.escape(module) for module in CLIP_LORA_MODULES)}))$"
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
        text_module = _diffusers_text_module(name)
        if text_module is not None:
            tensors[f"{text_module}.lora_A.weight"] = np.ascontiguousarray(down, np.float32)
            tensors[f"{text_module}.lora_B.weight"] = np.ascontiguousarray(up, np.float32)
            continue
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


def _diffusers_text_module(kohya):
    """diffusers' module of a kohya CLIP-L/G LoRA name, or None for another name.

    `lora_te1_text_model_encoder_layers_0_self_attn_q_proj` ->
    `text_encoder.text_model.encoder.layers.0.self_attn.q_proj`.
    """
    match = _KOHYA_TEXT_MODULE.match(kohya)
    if match is None:
        return None
    prefix, index, module = match.groups()
    dotted = next(name for name in CLIP_LORA_MODULES if name.replace(".", "_") == module)
    return f"{_TEXT_ENCODER_COMPONENTS[prefix]}.{CLIP_LAYERS}.{index}.{dotted}"


def save_diffusers_sd3_lora(lora_weights, path):
    """Writes `diffusers_sd3_lora_tensors` as a `.safetensors` file, atomically; returns `path`."""
    import safetensors.numpy

    from studio.files.atomic_write import write_file_atomically

    metadata = {str(key): str(value) for key, value in lora_weights.metadata.items()}
    data = safetensors.numpy.save(diffusers_sd3_lora_tensors(lora_weights), metadata=metadata)
    return write_file_atomically(os.fspath(path), data)


def is_diffusers_sd3_lora(tensors):
    """Whether tensor names are diffusers' SD3 LoRA.

    That is: `transformer.transformer_blocks.*.lora_A.weight` / `lora_B`
    names, and maybe CLIP-L / CLIP-G ones (`text_encoder.text_model.
    encoder.layers.*`, `text_encoder_2.…`).
    """
    prefix = f"{DIFFUSERS_TRANSFORMER_PREFIX}.transformer_blocks."
    allowed = (prefix,) + tuple(
        f"{component}.{CLIP_LAYERS}." for component in _TEXT_ENCODER_COMPONENTS.values()
    )
    return any(name.startswith(prefix) for name in tensors) and all(
        name.startswith(allowed) and name.endswith((LORA_A_SUFFIX, LORA_B_SUFFIX))
        for name in tensors
    )


def sd3_lora_from_diffusers_tensors(tensors, source="the file"):
    """A diffusers SD3 LoRA as kohya modules `{name: (down, up, alpha)}` (`LoRAWeights`' modules).

    Args:
        tensors: dict name -> array, `is_diffusers_sd3_lora`.
        source: what to name in errors.

    Returns:
        dict kohya module -> `(down (rank, in), up (out, rank), alpha = rank)`;
        a fused qkv whose q, k, v all appear becomes one module of rank
        `rank_q + rank_k + rank_v`.

    Raises:
        InvalidInputError: a module the MMDiT or CLIP-L/G has no adapted
            layer for, a module without its A or B, or a qkv with only
            some of q, k, v.
    """
    pairs = _lora_pairs(tensors)
    transformer = f"{DIFFUSERS_TRANSFORMER_PREFIX}."
    text = [module for module in pairs if not module.startswith(transformer)]
    unknown_text = sorted(
        name for name in tensors if not name.startswith(transformer)
        and not _DIFFUSERS_TEXT_MODULE.match(_lora_module(name))
    )  # fmt: skip
    if unknown_text:
        raise InvalidInputError(
            f"{len(unknown_text)} LoRA tensor(s) in {source} name no CLIP-L/G layer the studio "
            "adapts (self_attn q/k/v/out_proj, mlp fc1/fc2). Received: " + str(unknown_text[:5])
        )
    modules = {}
    for module in text:
        component, name = _DIFFUSERS_TEXT_MODULE.match(module).groups()
        down, up = _down_up(pairs.pop(module), module, source)
        prefix = _TEXT_ENCODER_PREFIXES_BY_COMPONENT[component]
        modules[f"{prefix}_{name.replace('.', '_')}"] = (down, up, float(down.shape[0]))
    pairs = {module[len(transformer):]: pair for module, pair in pairs.items()}
    by_diffusers = {}
    for block_index in sorted({int(module.split(".")[1]) for module in pairs}):
        for stream in STREAMS:
            for module in _LORA_MODULES:
                sd3 = f"joint_blocks.{block_index}.{stream}.{module}"
                by_diffusers[diffusers_module(sd3)] = sd3
    for split, sd3 in by_diffusers.items():
        parts = split if isinstance(split, tuple) else (split,)
        present = [part for part in parts if part in pairs]
        if not present:
            continue
        if len(present) != len(parts):
            raise InvalidInputError(
                f"{source} has LoRA for {present} but not for all of {list(parts)}: the "
                "studio adapts SD3's fused qkv as one layer. Received: a partial q/k/v"
            )
        downs, ups = zip(*(_down_up(pairs[part], part, source) for part in parts))
        down = np.concatenate(downs, axis=0)
        up = np.zeros((sum(u.shape[0] for u in ups), down.shape[0]), np.float32)
        row = column = 0
        for part_up in ups:
            up[row : row + part_up.shape[0], column : column + part_up.shape[1]] = part_up
            row, column = row + part_up.shape[0], column + part_up.shape[1]
        modules[kohya_module(sd3)] = (down, up, float(down.shape[0]))
    known = {
        part for split in by_diffusers for part in (split if isinstance(split, tuple) else (split,))
    }
    unknown = sorted(set(pairs) - known)
    if unknown:
        raise InvalidInputError(
            f"{len(unknown)} LoRA module(s) in {source} have no layer in SD3's MMDiT "
            f"(attention q/k/v/out and MLP only). Received: {unknown[:5]}"
        )
    return modules



def _lora_pairs(tensors):
    """`{module: {".lora_A.weight": A, ".lora_B.weight": B}}` of diffusers LoRA tensors (float32)."""
    pairs = {}
    for name, value in tensors.items():
        module = _lora_module(name)
        pairs.setdefault(module, {})[name[len(module):]] = np.asarray(value, np.float32)
    return pairs


def _lora_module(name):
    """The module of a diffusers LoRA tensor (`<module>.lora_A.weight` / `.lora_B.weight`)."""
    suffix = LORA_A_SUFFIX if name.endswith(LORA_A_SUFFIX) else LORA_B_SUFFIX
    return name[: -len(suffix)]


def _down_up(pair, module, source):
    """A module's `(lora_A, lora_B)`, or one line when one of them is missing."""
    if LORA_A_SUFFIX not in pair or LORA_B_SUFFIX not in pair:
        raise InvalidInputError(
            f"LoRA module {module!r} in {source} needs both lora_A and lora_B. "
            f"Received: {sorted(pair)}"
        )
    return pair[LORA_A_SUFFIX], pair[LORA_B_SUFFIX]
