"""LoRA weights in kohya's `.safetensors` layout, from and into a backbone."""

import logging
import os

import keras
import numpy as np

from studio.errors import InvalidInputError
from studio.interop.sd3_mmdit_names import kohya_module, mmdit_modules
from studio.lora.lora_targets import (
    TEXT_ENCODER_PREFIX,
    UNET_PREFIX,
    kohya_name,
    text_encoder_lora_targets,
    unet_lora_targets,
)
from studio.lora.sd3_clip_lora_targets import SD3_TEXT_ENCODER_PREFIXES, sd3_clip_lora_targets
from studio.lora.sd3_diffusers_lora import is_diffusers_sd3_lora, sd3_lora_from_diffusers_tensors
from studio.models.presets import SD3

logger = logging.getLogger(__name__)

DOWN_SUFFIX = ".lora_down.weight"
UP_SUFFIX = ".lora_up.weight"
ALPHA_SUFFIX = ".alpha"
# kohya's scripts write these; tools read the rank and alpha from them.
KOHYA_NETWORK_MODULE = "networks.lora"
# Metadata of ours: the `token_table_hash` of the base model trained on.
TOKEN_TABLE_HASH_KEY = "studio_token_table_hash"
SAVE_DTYPES = ("float32", "float16")


class LoRAWeights:
    """LoRA matrices by kohya module name, as other Stable Diffusion tools store them.

    Each adapted dense layer `y = x @ W` gets `y = x @ (W + (alpha / rank) *
    down.T @ up.T)`. Keras' `Dense.enable_lora` keeps `lora_kernel_a`
    `(in, rank)` and `lora_kernel_b` `(rank, out)`, in the `[in, out]`
    layout of Dense kernels; kohya's files keep torch's `[out, in]` layout:
    `lora_down.weight` `(rank, in)` is `lora_kernel_a.T`, `lora_up.weight`
    `(out, rank)` is `lora_kernel_b.T`, and `alpha` is `lora_alpha`. Module
    names are listed in `studio.lora.lora_targets`.

    Args:
        modules: dict kohya module name (`"lora_unet_..._attn1_to_q"`) ->
            `(down, up, alpha)`: float arrays `(rank, in)` and `(out, rank)`
            and a float.
        metadata: dict str -> str, the file's `__metadata__`.

    Raises:
        ValueError: when a module's matrices do not share one rank.

    Example:

    ```python
    LoRAWeights.from_backbone(backbone).save("sks-dog.safetensors")
    fresh = StableDiffusionBackbone.from_preset("sd-v1")
    LoRAWeights.load("sks-dog.safetensors").apply(fresh, scale=0.8)
    images = TextToImagePipeline(fresh)("a photo of sks dog", seed=1)
    ```
    """

    def __init__(self, modules, metadata=None):
        checked = {}
        for name, (down, up, alpha) in modules.items():
            down = np.asarray(down)
            up = np.asarray(up)
            if down.ndim != 2 or up.ndim != 2 or down.shape[0] != up.shape[1]:
                raise InvalidInputError(
                    f"LoRA module {name!r} must have down (rank, in) and up (out, rank) "
                    f"matrices of one rank. Received: down {down.shape}, up {up.shape}"
                )
            checked[name] = (down, up, float(alpha))
        self.modules = checked
        self.metadata = dict(metadata or {})

    @property
    def ranks(self):
        """The distinct ranks of the modules, sorted."""
        return sorted({down.shape[0] for down, _, _ in self.modules.values()})

    @classmethod
    def from_backbone(cls, backbone, metadata=None):
        """The LoRA weights of every LoRA-enabled layer of `backbone`'s UNet and text encoder.

        Args:
            backbone: a `StableDiffusionBackbone` whose target layers were
                given LoRA (`Dense.enable_lora`).
            metadata: dict str -> str added to the file's metadata.

        Returns:
            A `LoRAWeights`; `alpha` is each layer's current `lora_alpha`.

        Raises:
            ValueError: no layer has LoRA enabled.
        """
        modules = {}
        for name, layer in _named_targets(backbone).items():
            if getattr(layer, "lora_enabled", False):
                down = np.asarray(layer.lora_kernel_a.numpy(), dtype="float32").T
                up = np.asarray(layer.lora_kernel_b.numpy(), dtype="float32").T
                modules[name] = (down, up, layer.lora_alpha)
        if not modules:
            raise ValueError(
                "The backbone has no LoRA-enabled layer to save. Received: "
                f"{getattr(backbone, 'name', backbone)!r} without LoRA"
            )
        ranks = sorted({down.shape[0] for down, _, _ in modules.values()})
        alphas = sorted({alpha for _, _, alpha in modules.values()})
        info = {
            "ss_network_module": KOHYA_NETWORK_MODULE,
            "ss_network_dim": str(ranks[0]) if len(ranks) == 1 else "dynamic",
            "ss_network_alpha": _format_alpha(alphas[0]) if len(alphas) == 1 else "dynamic",
        }
        info.update(metadata or {})
        return cls(modules, info)

    def save(self, path, dtype="float32"):
        """Writes the kohya `.safetensors` file, atomically.

        Args:
            path: the file.
            dtype: `"float32"` (reproduces the trained model exactly) or
                `"float16"` (half the size). `alpha` is always float32.

        Returns:
            `path`.
        """
        import safetensors.numpy

        from studio.files.atomic_write import write_file_atomically

        if dtype not in SAVE_DTYPES:
            raise InvalidInputError(f"`dtype` must be one of {SAVE_DTYPES}. Received: dtype={dtype!r}")
        tensors = {}
        for name, (down, up, alpha) in self.modules.items():
            tensors[name + DOWN_SUFFIX] = np.ascontiguousarray(down, dtype=dtype)
            tensors[name + UP_SUFFIX] = np.ascontiguousarray(up, dtype=dtype)
            tensors[name + ALPHA_SUFFIX] = np.asarray(alpha, dtype="float32")
        metadata = {str(key): str(value) for key, value in self.metadata.items()}
        data = safetensors.numpy.save(tensors, metadata=metadata)
        return write_file_atomically(os.fspath(path), data)

    @classmethod
    def load(cls, path):
        """Reads a kohya LoRA `.safetensors` file (float32, float16 or bfloat16).

        A module without `alpha` gets `alpha = rank` (scale 1), as kohya's
        loader assumes.

        Raises:
            ValueError: the file holds tensors that are not kohya LoRA
                matrices (e.g. LyCORIS or DoRA weights), or a module lacks
                its down or up matrix.
        """
        from studio.tensor_files.safetensors_reader import read_safetensors

        stored, metadata = read_safetensors(os.fspath(path))
        if is_diffusers_sd3_lora(stored):
            # diffusers' SD3 names (split q / k / v): fused back into kohya's.
            tensors = {key: tensor.numpy() for key, tensor in stored.items()}
            return cls(sd3_lora_from_diffusers_tensors(tensors, path), metadata)
        parts, unknown = {}, []
        for key, tensor in stored.items():
            for suffix, part in ((DOWN_SUFFIX, "down"), (UP_SUFFIX, "up"), (ALPHA_SUFFIX, "alpha")):
                if key.endswith(suffix):
                    parts.setdefault(key[: -len(suffix)], {})[part] = tensor.numpy()
                    break
            else:
                unknown.append(key)
        if unknown:
            raise InvalidInputError(
                f"{path} is not a kohya LoRA file: expected only '*{DOWN_SUFFIX}', "
                f"'*{UP_SUFFIX}' and '*{ALPHA_SUFFIX}' tensors. Received: {unknown[:5]}"
                + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            )
        modules = {}
        for name, part in parts.items():
            if "down" not in part or "up" not in part:
                raise InvalidInputError(
                    f"LoRA module {name!r} in {path} needs both its down and up "
                    f"matrices. Received: {sorted(part)}"
                )
            down, up = _squeeze_1x1(part["down"]), _squeeze_1x1(part["up"])
            alpha = float(part["alpha"]) if "alpha" in part else float(down.shape[0])
            modules[name] = (down.astype("float32"), up.astype("float32"), alpha)
        return cls(modules, metadata)

    def apply(self, backbone, scale=1.0, strict=True):
        """Gives `backbone`'s layers these LoRA weights, scaled by `scale`.

        Layers without LoRA get it (`Dense.enable_lora`); layers that have
        it with the same rank get the new values. Each layer then computes
        `W + scale * (alpha / rank) * down.T @ up.T`; `scale=0` leaves the
        base model's outputs exactly as they were. Apply before building a
        pipeline: a compiled pipeline keeps the scale it was traced with.

        Args:
            backbone: a `StableDiffusionBackbone`.
            scale: float, the LoRA's strength (1: as trained).
            strict: True raises for modules the backbone has no layer for;
                False skips them with a warning (e.g. the 1x1-convolution
                `proj_in` / `proj_out` modules some tools add).

        Returns:
            The list of module names applied.

        Raises:
            ValueError: unknown modules (when strict), or matrices whose
                shapes do not fit their layer, or a layer with LoRA of
                another rank.
        """
        trained_on = self.metadata.get(TOKEN_TABLE_HASH_KEY)
        current = getattr(backbone, "token_table_hash", None)
        if trained_on and current and trained_on != current:
            # Other tools' files carry no hash: nothing to compare then.
            logger.warning(
                "This LoRA was trained on another base model (%s; token table hash "
                "%s..., this model's %s...): it applies, but may not look as intended.",
                self.metadata.get("studio_base_model", "unknown"), trained_on[:12],
                current[:12],
            )
        targets = _named_targets(backbone)
        missing = [name for name in self.modules if name not in targets]
        if missing and strict:
            raise InvalidInputError(
                f"{len(missing)} LoRA module(s) have no matching layer in "
                f"{getattr(backbone, 'name', 'the backbone')!r} (only attention and "
                "feed-forward projections of the denoiser and text encoders are supported). "
                f"Received: {missing[:5]}" + (" ..." if len(missing) > 5 else "")
            )
        if missing:
            logger.warning("Skipping %d LoRA module(s) without a layer: %s", len(missing), missing[:5])
        applied = []
        for name, (down, up, alpha) in self.modules.items():
            layer = targets.get(name)
            if layer is None:
                continue
            rank = down.shape[0]
            kernel_shape = tuple(layer.kernel.shape)
            if (down.shape[1], up.shape[0]) != kernel_shape:
                raise InvalidInputError(
                    f"LoRA module {name!r} does not fit its layer: the layer's kernel is "
                    f"{kernel_shape} (in, out). Received: down {down.shape}, up {up.shape}"
                )
            if not layer.lora_enabled:
                layer.enable_lora(rank, lora_alpha=alpha * scale)
            elif layer.lora_rank != rank:
                raise InvalidInputError(
                    f"The layer of {name!r} already has LoRA of rank {layer.lora_rank}. "
                    f"Received: rank {rank}"
                )
            layer.lora_alpha = alpha * scale
            layer.lora_kernel_a.assign(down.T)
            layer.lora_kernel_b.assign(up.T)
            applied.append(name)
        return applied


def _named_targets(backbone):
    """Every layer a LoRA file may name, by kohya module name."""
    if getattr(backbone, "family", None) == SD3:
        # SD3: every dense layer of the MMDiT, by SD3 module
        # (`lora_unet_joint_blocks_0_x_block_attn_qkv`, as ComfyUI reads):
        # training adapts attention and MLPs, other tools' files also the
        # modulations and embedders. CLIP-L / CLIP-G by transformers module
        # (`lora_te1_text_model_encoder_layers_0_self_attn_q_proj`).
        targets = {
            kohya_module(module): layer
            for module, layer in mmdit_modules(backbone.mmdit).items()
            if isinstance(layer, keras.layers.Dense)
        }
        for encoder, prefix in SD3_TEXT_ENCODER_PREFIXES.items():
            clip = sd3_clip_lora_targets(getattr(backbone, encoder), mlp=True)
            targets.update({kohya_name(prefix, module): layer for module, layer in clip.items()})
        return targets
    if getattr(backbone, "text_encoder_2", None) is not None:
        # SD-XL: kohya's SGM names (`lora_unet_input_blocks_...`, `lora_te1_`, `lora_te2_`).
        from studio.lora.sdxl_lora_targets import sdxl_lora_targets

        return sdxl_lora_targets(backbone)
    targets = {
        kohya_name(UNET_PREFIX, module): layer
        for module, layer in unet_lora_targets(backbone.unet, feed_forward=True).items()
    }
    targets.update(
        {
            kohya_name(TEXT_ENCODER_PREFIX, module): layer
            for module, layer in text_encoder_lora_targets(backbone.text_encoder, mlp=True).items()
        }
    )
    return targets


def _squeeze_1x1(matrix):
    # Some tools store linear LoRA matrices as 1x1 convolution kernels.
    if matrix.ndim == 4 and matrix.shape[2:] == (1, 1):
        return matrix[:, :, 0, 0]
    return matrix


def _format_alpha(alpha):
    return str(int(alpha)) if float(alpha).is_integer() else str(alpha)
