"""keras-hub's SD3 MMDiT as diffusers' `SD3Transformer2DModel`: its config and state dict."""

import numpy as np

from studio.interop.sd3_mmdit_names import (
    SWAPPED_LAST_CONTEXT,
    SWAPPED_SCALE_SHIFT,
    diffusers_module,
    mmdit_modules,
)


def diffusers_transformer_config(mmdit):
    """The `SD3Transformer2DModel` config of keras-hub's `MMDiT` (SD3 / SD3.5 without dual attention).

    Raises:
        ValueError: for an MMDiT with q/k norms or dual attention (SD3.5),
            which this exporter does not map yet.
    """
    if mmdit.qk_norm is not None or mmdit.dual_attention_indices:
        raise ValueError(
            "Only MMDiTs without q/k norm and dual attention (SD3 medium's layout) are "
            f"exported. Received: qk_norm={mmdit.qk_norm!r}, "
            f"dual_attention_indices={mmdit.dual_attention_indices!r}"
        )
    return {
        "sample_size": int(mmdit.latent_shape[0]),
        "patch_size": int(mmdit.patch_size),
        "in_channels": int(mmdit.latent_shape[-1]),
        "num_layers": int(mmdit.num_layers),
        "attention_head_dim": int(mmdit.hidden_dim // mmdit.num_heads),
        "num_attention_heads": int(mmdit.num_heads),
        "joint_attention_dim": int(mmdit.context_shape[-1]),
        "caption_projection_dim": int(mmdit.hidden_dim),
        "pooled_projection_dim": int(mmdit.pooled_projection_shape[-1]),
        "out_channels": int(mmdit.latent_shape[-1]),
        "pos_embed_max_size": int(mmdit.position_size),
    }


def diffusers_transformer_state_dict(mmdit):
    """keras-hub `MMDiT` weights under `SD3Transformer2DModel`'s names (float32 NumPy, torch layouts).

    Dense kernels `(in, out)` become `(out, in)` weights, convolution
    kernels `(h, w, in, out)` become `(out, in, h, w)`; fused qkv is split
    into q, k, v; the (shift, scale) modulations that diffusers keeps as
    (scale, shift) are swapped; the position table gets its batch axis.
    """
    last_block = int(mmdit.num_layers) - 1
    state = {}
    for module, layer in mmdit_modules(mmdit).items():
        kernel = np.asarray(layer.kernel.numpy(), np.float32)
        weight = kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T
        bias = np.asarray(layer.bias.numpy(), np.float32)
        target = diffusers_module(module)
        if isinstance(target, tuple):
            for name, part_weight, part_bias in zip(
                target, np.split(weight, 3, axis=0), np.split(bias, 3)
            ):
                state[f"{name}.weight"], state[f"{name}.bias"] = part_weight, part_bias
            continue
        if target == SWAPPED_SCALE_SHIFT or (
            target == f"transformer_blocks.{last_block}.{SWAPPED_LAST_CONTEXT}"
        ):
            weight, bias = _swap_halves(weight), _swap_halves(bias)
        state[f"{target}.weight"], state[f"{target}.bias"] = weight, bias
    positions = np.asarray(mmdit.position_embedding.position_embeddings.numpy(), np.float32)
    state["pos_embed.pos_embed"] = positions[None]
    return {name: np.ascontiguousarray(value) for name, value in state.items()}


def _swap_halves(array):
    first, second = np.split(array, 2, axis=0)
    return np.concatenate([second, first], axis=0)
