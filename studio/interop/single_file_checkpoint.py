"""Imports original-LDM single-file checkpoints into a backbone, and exports them.

A single file (`.safetensors`, or a `.ckpt` read without running its
pickle code) holds the three networks under their original names:
`model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE) and
`cond_stage_model.*` (text encoder: Hugging Face CLIP names for SD 1.x,
OpenCLIP's for SD 2.x). This is what AUTOMATIC1111 and ComfyUI load and
what diffusers' `from_single_file` converts.

A single file has no config: the architecture is read from tensor names
and shapes (levels, channels, attention levels, transformer depth,
context width from `attn2.to_k`, conv or linear transformer projections,
text encoder width and depth). What shapes cannot show is fixed by the
Stable Diffusion releases: the original code's numerics (GroupNorm
epsilon 1e-5 in the UNet's residual blocks, 1e-6 in its transformers and
in the VAE, exact GELU; diffusers' too), 32 groups in every GroupNorm,
8 heads per UNet attention with conv projections (SD 1.x) or 64-wide
heads with linear ones (SD 2.x), 64-wide text-encoder heads, latent scale
0.18215 and SD's noise schedule. SD 2.x reads the penultimate OpenCLIP layer, so the
file's last transformer block is not used.

Nor can shapes show what the UNet predicts (SD 2.x came as 512 px epsilon
and 768 px v-prediction models with identical shapes). The rule, unless
`prediction_type` / `image_size` are given: ModelSpec metadata
(`modelspec.prediction_type`, `modelspec.resolution`) when the file has
it; SD 1.x is epsilon at 512 px; SD 2.x is epsilon at 512 px when the
file name mentions "512" or "base" (`v2-1_512-ema-pruned`,
`512-base-ema`), otherwise v-prediction at 768 px, like the 2.0-v and
2.1 releases most SD 2.x fine-tunes start from. Giving only one of the
two picks the other to match (768 <-> v_prediction, 512 <-> epsilon).
"""

import os
import re

import numpy as np

from studio.errors import InvalidInputError
from studio.interop.checkpoint_format_error import CheckpointFormatError
from studio.interop.checkpoint_reader import quote_names, read_checkpoint
from studio.interop.diffusers_configs import (
    DIFFUSERS_UNET_NORM_EPSILON,
    SD_LATENT_SCALE,
    SD_NOISE_SCHEDULE,
    diffusers_unet_numerics,
    diffusers_vae_numerics,
)
from studio.interop.hf_tokenizer_files import is_hf_tokenizer_folder, read_hf_tokenizer
from studio.tensor_files.safetensors_writer import write_safetensors
from studio.interop.text_encoder_names import (
    HUGGING_FACE,
    KOHYA_TEXT_ENCODER_PREFIX,
    LDM_CLIP_PREFIX,
    LDM_LEGACY_CLIP_PREFIX,
    LDM_OPEN_CLIP_PREFIX,
    OPEN_CLIP,
    text_encoder_weight_names,
)
from studio.interop.unet_names import KOHYA_UNET_PREFIX, LDM, LDM_UNET_PREFIX, unet_weight_names
from studio.interop.unsupported_model_error import UnsupportedModelError
from studio.interop.vae_names import (
    LDM_VAE_PREFIX,
    vae_decoder_weight_names,
    vae_encoder_weight_names,
)
from studio.interop.weight_transfer import load_torch_weights, torch_weights

SD_1 = "SD 1.x"
# SD-XL single files keep their text encoders here (`sdxl_single_file`).
SGM_EMBEDDERS = "conditioner.embedders."
# `studio.models.presets.SDXL` (importing studio.interop must not import Keras).
SDXL_FAMILY = "sdxl"
SD_2 = "SD 2.x"
# What the shapes cannot show (see the module docstring).
SD_NORM_GROUPS = 32
SD_1_UNET_HEADS = 8
SD_2_UNET_HEAD_SIZE = 64
CLIP_HEAD_SIZE = 64
CLIP_LAYER_NORM_EPSILON = 1e-5
CLIP_VOCABULARY_SIZE = 49408
SD_1_ACTIVATION = "quick_gelu"
SD_2_ACTIVATION = "gelu"
END_TOKEN = "<|endoftext|>"
# OpenCLIP pads token rows with id 0, which is "!".
OPEN_CLIP_PAD_TOKEN = "!"
SD_1_IMAGE_SIZE = 512
SD_2_BASE_IMAGE_SIZE = 512
SD_2_V_IMAGE_SIZE = 768
SD_2_BASE_NAME_HINTS = ("512", "base")
TEXT_PREFIX = "cond_stage_model."
CONV_IN = LDM_UNET_PREFIX + "input_blocks.0.0.weight"
TEXT_TO_IMAGE_INPUT_CHANNELS = 4
INPAINTING_INPUT_CHANNELS = 9
INSTRUCT_PIX2PIX_INPUT_CHANNELS = 8
# ModelSpec (Stability AI's metadata convention for single files).
MODELSPEC_PREDICTION = "modelspec.prediction_type"
MODELSPEC_RESOLUTION = "modelspec.resolution"
MODELSPEC_PREDICTION_NAMES = {
    "epsilon": "epsilon",
    "v": "v_prediction",
    "v_prediction": "v_prediction",
}
MODELSPEC_VERSION = "1.0.0"
# Tensors of a single file that the networks do not use.
IGNORED_PREFIXES = (
    LDM_VAE_PREFIX + "loss.",  # the VAE's training loss (LPIPS, discriminator)
    LDM_OPEN_CLIP_PREFIX + "visual.",  # OpenCLIP's image tower
)
IGNORED_NAMES = {
    LDM_CLIP_PREFIX + "embeddings.position_ids",
    LDM_LEGACY_CLIP_PREFIX + "embeddings.position_ids",
    LDM_OPEN_CLIP_PREFIX + "text_projection",
    LDM_OPEN_CLIP_PREFIX + "logit_scale",
    LDM_OPEN_CLIP_PREFIX + "attn_mask",
}


def import_single_file(path, prediction_type=None, image_size=None, vocabulary=None, dtype=None):
    """Builds a `StableDiffusionBackbone` from an original-LDM single file
    (an `SDXLBackbone` from an SD-XL one, see `sdxl_single_file`).

    Args:
        path: a `.safetensors` or `.ckpt` file of SD 1.x or 2.x.
        prediction_type: `"epsilon"`, `"v_prediction"`, or None for the rule
            of the module docstring.
        image_size: the training resolution in pixels, or None (same rule).
        vocabulary: the tokenizer: None for CLIP's vocabulary from the Keras
            cache (downloaded once), a local `bpe_simple_vocab_16e6.txt.gz`
            (or its folder), or a Hugging Face tokenizer folder (`vocab.json`
            and `merges.txt`).
        dtype: the networks' dtype policy (e.g. `"mixed_float16"`); None
            keeps Keras' global policy.

    Returns:
        A `studio.models.StableDiffusionBackbone`, named after the file.

    Raises:
        UnsupportedModelError: SD-XL, SD 3, instruct-pix2pix and other models the
            studio lacks, or files that are no Stable Diffusion checkpoint;
            the message names what was found.
        CheckpointFormatError: missing tensors, or shapes that do not fit.
        TensorFileError: a truncated or damaged file.
        UnsafePickleError: a `.ckpt` naming a Python global that is not
            tensor data (nothing of it was run).
    """
    from studio.models import CLIPTextEncoder, StableDiffusionBackbone, UNet, VAEDecoder, VAEEncoder

    path = os.fspath(path)
    tensors, metadata = read_checkpoint(path)
    if any(name.startswith(SGM_EMBEDDERS) for name in tensors):
        from studio.interop.sdxl_single_file import import_sdxl_single_file

        backbone = import_sdxl_single_file(path, tensors, metadata, vocabulary, dtype)
        if prediction_type is not None:
            backbone.prediction_type = prediction_type
        if image_size is not None:
            backbone.image_size = int(image_size)
        return backbone
    architecture = describe_single_file(tensors, path)
    prediction_type, image_size = _prediction_and_size(
        architecture["family"], metadata, path, prediction_type, image_size
    )
    text_arguments = architecture["text_encoder"]
    tokenizer = _tokenizer(vocabulary, architecture, path)

    policy = {} if dtype is None else {"dtype": dtype}
    text_encoder = CLIPTextEncoder(name="text_encoder", **text_arguments, **policy)
    unet = UNet(name="unet", **architecture["unet"], **policy)
    vae_encoder = VAEEncoder(name="vae_encoder", **architecture["vae"], **policy)
    vae_decoder = VAEDecoder(name="vae_decoder", **architecture["vae"], **policy)
    text_names = text_encoder_weight_names(
        text_encoder, architecture["text_layout"], architecture["text_prefix"]
    )
    load_torch_weights(text_encoder, text_names, tensors, path)
    load_torch_weights(unet, unet_weight_names(unet, LDM), tensors, path)
    load_torch_weights(vae_encoder, vae_encoder_weight_names(vae_encoder, LDM), tensors, path)
    load_torch_weights(vae_decoder, vae_decoder_weight_names(vae_decoder, LDM), tensors, path)
    unused = [name for name in tensors if _is_network_tensor(name, architecture)]
    if unused:
        raise CheckpointFormatError(
            f"{path} holds {len(unused)} network tensors that a {architecture['family']} "
            "model has no place for, so it is a variant the studio does not know. "
            f"Received: {quote_names(unused)}"
        )
    return StableDiffusionBackbone(
        text_encoder=text_encoder,
        unet=unet,
        vae_encoder=vae_encoder,
        vae_decoder=vae_decoder,
        tokenizer=tokenizer,
        prediction_type=prediction_type,
        latent_scale=SD_LATENT_SCALE,
        image_size=image_size,
        noise_schedule=dict(SD_NOISE_SCHEDULE),
        name=os.path.splitext(os.path.basename(path))[0],
    )


def describe_single_file(tensors, source):
    """Infers the architecture of a single file from its tensor names and shapes.

    Args:
        tensors: dict name -> anything with a `.shape`.
        source: the file, for messages.

    Returns:
        A dict: `family` (`"SD 1.x"` or `"SD 2.x"`), `unet`, `vae` and
        `text_encoder` (constructor arguments of our networks),
        `text_layout` and `text_prefix` (where the text encoder's tensors
        are).

    Raises:
        UnsupportedModelError: the file is not an SD 1.x / 2.x text-to-image
            checkpoint; the message names what it looks like.
        CheckpointFormatError: a part is missing or inconsistent.
    """
    _check_family(tensors, source)
    text_layout, text_prefix, text_arguments = _text_encoder_arguments(tensors, source)
    unet_arguments = unet_arguments_from_tensors(tensors, source)
    if unet_arguments["context_dim"] != text_arguments["hidden_dim"]:
        raise CheckpointFormatError(
            f"{source}: the UNet attends to {unet_arguments['context_dim']}-wide text "
            f"features, the text encoder makes {text_arguments['hidden_dim']}-wide ones."
        )
    return {
        "family": SD_1 if text_layout == HUGGING_FACE else SD_2,
        "unet": unet_arguments,
        "vae": vae_arguments_from_tensors(tensors, source),
        "text_encoder": text_arguments,
        "text_layout": text_layout,
        "text_prefix": text_prefix,
    }


def export_single_file(backbone, path, dtype="float32", overwrite=False):
    """Writes `backbone` as an original-LDM `.safetensors` single file.

    SD 1.x-style text encoders (`quick_gelu`) are written with Hugging Face
    CLIP names, others with OpenCLIP's plus one extra transformer block
    that computes the identity (all its projections zero): SD 2.x readers
    skip the last block (they read the penultimate layer), and a reader
    that runs every block gets the same result. ModelSpec metadata records
    the prediction type and resolution.

    Args:
        backbone: a `studio.models.StableDiffusionBackbone` (LoRA layers are
            written merged).
        path: the `.safetensors` file to write (atomically).
        dtype: `"float32"` or `"float16"`.
        overwrite: whether an existing file may be replaced.

    Returns:
        `path`.

    Raises:
        ValueError: the backbone has settings a single file cannot record
            (see the module docstring); a diffusers folder can.
        FileExistsError: `path` exists and `overwrite` is False.
    """
    path = os.fspath(path)
    if getattr(backbone, "family", None) == SDXL_FAMILY:
        from studio.interop.sdxl_single_file import export_sdxl_single_file

        return export_sdxl_single_file(backbone, path, dtype=dtype, overwrite=overwrite)
    _check_expressible(backbone)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path} already exists; choose another output or allow overwriting "
            f"(--overwrite). Received: out={path!r}"
        )
    encoder = backbone.text_encoder
    open_clip = encoder.intermediate_activation != SD_1_ACTIVATION
    layout, prefix = (
        (OPEN_CLIP, LDM_OPEN_CLIP_PREFIX) if open_clip else (HUGGING_FACE, LDM_CLIP_PREFIX)
    )
    tensors = (
        torch_weights(backbone.unet, unet_weight_names(backbone.unet, LDM))
        + torch_weights(backbone.vae_encoder, vae_encoder_weight_names(backbone.vae_encoder, LDM))
        + torch_weights(backbone.vae_decoder, vae_decoder_weight_names(backbone.vae_decoder, LDM))
        + torch_weights(encoder, text_encoder_weight_names(encoder, layout, prefix))
    )
    if open_clip:
        tensors += _identity_open_clip_block(encoder)
    return write_safetensors(path, tensors, metadata=_modelspec(backbone, open_clip), dtype=dtype)


def _check_family(tensors, source):
    """Names SD-XL, SD 3, instruct-pix2pix and non-checkpoint files."""
    names = list(tensors)

    def unsupported(what):
        raise UnsupportedModelError(
            f"{source} is {what}; the studio imports Stable Diffusion 1.x and 2.x "
            f"text-to-image checkpoints. Received: tensors such as {quote_names(names)}"
        )

    if any(name.startswith("conditioner.embedders.") for name in names):
        unsupported("an SD-XL checkpoint (text encoders under `conditioner.embedders.*`)")
    if LDM_UNET_PREFIX + "label_emb.0.0.weight" in tensors:
        unsupported("an SD-XL-style UNet (size/class embedding `label_emb`)")
    if any(".joint_blocks." in name or name.startswith("joint_blocks.") for name in names):
        unsupported("an SD 3 checkpoint (MMDiT `joint_blocks`)")
    if any("double_blocks." in name for name in names):
        unsupported("a Flux checkpoint (`double_blocks`)")
    if CONV_IN not in tensors:
        if "conv_in.weight" in tensors and any(name.startswith("down_blocks.") for name in names):
            unsupported(
                "a diffusers UNet weight file, not a single-file checkpoint (import the "
                "whole diffusers folder instead)"
            )
        if any(name.startswith((KOHYA_UNET_PREFIX + "_", KOHYA_TEXT_ENCODER_PREFIX)) for name in names):
            unsupported("a LoRA file, not a model")
        if "encoder.conv_in.weight" in tensors or "decoder.conv_in.weight" in tensors:
            unsupported("a stand-alone VAE, not a whole model")
        unsupported(f"not a Stable Diffusion checkpoint (it has no `{CONV_IN}`)")
    in_channels = tensors[CONV_IN].shape[1]
    if in_channels == INSTRUCT_PIX2PIX_INPUT_CHANNELS:
        unsupported("an instruct-pix2pix model (8 UNet input channels: latents and image)")
    if in_channels not in (TEXT_TO_IMAGE_INPUT_CHANNELS, INPAINTING_INPUT_CHANNELS):
        unsupported(f"a UNet with {in_channels} input channels (text-to-image UNets have 4)")


def _text_encoder_arguments(tensors, source):
    """`(layout, prefix, CLIPTextEncoder arguments)` of the file's text encoder."""
    for prefix in (LDM_CLIP_PREFIX, LDM_LEGACY_CLIP_PREFIX):
        if prefix + "embeddings.token_embedding.weight" in tensors:
            return HUGGING_FACE, prefix, hugging_face_clip_arguments(tensors, prefix, source)
    prefix = LDM_OPEN_CLIP_PREFIX
    if prefix + "token_embedding.weight" in tensors:
        # SD 2.x reads the penultimate layer: the last block is left out.
        arguments = open_clip_arguments(tensors, prefix, source, drop_last_block=True)
        return OPEN_CLIP, prefix, arguments
    others = [name for name in tensors if not name.startswith((LDM_UNET_PREFIX, LDM_VAE_PREFIX))]
    raise CheckpointFormatError(
        f"{source} has no text encoder: expected CLIP under `{LDM_CLIP_PREFIX}` (SD 1.x) "
        f"or OpenCLIP under `{LDM_OPEN_CLIP_PREFIX}` (SD 2.x). Received: other tensors "
        f"{quote_names(others) or 'none'}"
    )


def hugging_face_clip_arguments(tensors, prefix, source):
    """`CLIPTextEncoder` arguments of a CLIP text model in Hugging Face names under `prefix`."""
    layers = count_tensors(tensors, prefix + "encoder.layers.{}.layer_norm1.weight")
    rows, width = tensors[prefix + "embeddings.token_embedding.weight"].shape
    return {
        "vocabulary_size": rows,
        "sequence_length": tensors[prefix + "embeddings.position_embedding.weight"].shape[0],
        "hidden_dim": width,
        "num_layers": layers,
        "num_heads": _clip_heads(width, source),
        "intermediate_dim": tensors[prefix + "encoder.layers.0.mlp.fc1.weight"].shape[0],
        "intermediate_activation": SD_1_ACTIVATION,
        "layer_norm_epsilon": CLIP_LAYER_NORM_EPSILON,
    }


def open_clip_arguments(tensors, prefix, source, drop_last_block):
    """`CLIPTextEncoder` arguments of an OpenCLIP text tower under `prefix`.

    Args:
        drop_last_block: leave the last transformer block out (SD 2.x,
            which reads the penultimate layer's normed states).
    """
    blocks = count_tensors(tensors, prefix + "transformer.resblocks.{}.ln_1.weight")
    if blocks < 2:
        raise CheckpointFormatError(
            f"{source}: an OpenCLIP text encoder needs at least 2 transformer blocks "
            f"(Stable Diffusion reads the penultimate one). Received: {blocks}"
        )
    rows, width = tensors[prefix + "token_embedding.weight"].shape
    return {
        "vocabulary_size": rows,
        "sequence_length": tensors[prefix + "positional_embedding"].shape[0],
        "hidden_dim": width,
        "num_layers": blocks - 1 if drop_last_block else blocks,
        "num_heads": _clip_heads(width, source),
        "intermediate_dim": tensors[prefix + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        "intermediate_activation": SD_2_ACTIVATION,
        "layer_norm_epsilon": CLIP_LAYER_NORM_EPSILON,
    }


def _clip_heads(width, source):
    if width % CLIP_HEAD_SIZE:
        raise UnsupportedModelError(
            f"{source}: the text encoder's width must be a multiple of {CLIP_HEAD_SIZE} "
            f"(CLIP's head size) to infer its heads. Received: width {width}"
        )
    return width // CLIP_HEAD_SIZE


def unet_arguments_from_tensors(tensors, source):
    """Our `UNet` arguments, read from the `input_blocks` and first transformer."""
    prefix = LDM_UNET_PREFIX
    levels, current, index = [], [], 1
    while True:
        block = f"{prefix}input_blocks.{index}."
        if block + "0.op.weight" in tensors:
            levels.append(current)
            current = []
        elif block + "0.out_layers.3.weight" in tensors:
            channels = tensors[block + "0.out_layers.3.weight"].shape[0]
            current.append((channels, block + "1.proj_in.weight" in tensors))
        else:
            break
        index += 1
    levels.append(current)
    per_level = {len(level) for level in levels}
    uniform = all(len(set(level)) == 1 for level in levels if level)
    if len(per_level) != 1 or 0 in per_level or not uniform:
        raise UnsupportedModelError(
            f"{source}: the UNet's levels are not laid out like SD's (the same number "
            "of residual blocks per level, each level of one width, with or without "
            f"attention). Received: (channels, attention) per level: {levels}"
        )
    block_channels = [level[0][0] for level in levels]
    attention_levels = [level[0][1] for level in levels]
    transformer = f"{prefix}middle_block.1."
    if transformer + "proj_in.weight" not in tensors:
        raise UnsupportedModelError(
            f"{source}: the UNet's middle block has no transformer, unlike SD's."
        )
    mid_depth = count_tensors(tensors, transformer + "transformer_blocks.{}.norm1.weight")
    depths, index = [], 1
    for level in levels:
        # The level's first block; levels without attention count as one deep.
        first = f"{prefix}input_blocks.{index}.1.transformer_blocks." + "{}.norm1.weight"
        depths.append(count_tensors(tensors, first) or 1)
        index += len(level) + 1
    if attention_levels[-1]:
        depths[-1] = mid_depth
    depth = depths[0] if len(set(depths)) == 1 else depths
    context_dim = tensors[transformer + "transformer_blocks.0.attn2.to_k.weight"].shape[1]
    conv_projection = len(tensors[transformer + "proj_in.weight"].shape) == 4
    if conv_projection:
        heads = {"num_heads": SD_1_UNET_HEADS}
        divisors = {"head count": SD_1_UNET_HEADS, "GroupNorm groups": SD_NORM_GROUPS}
    else:
        heads = {"head_size": SD_2_UNET_HEAD_SIZE}
        divisors = {"head size": SD_2_UNET_HEAD_SIZE, "GroupNorm groups": SD_NORM_GROUPS}
    for what, value in divisors.items():
        if any(channels % value for channels in block_channels):
            raise UnsupportedModelError(
                f"{source}: the UNet's widths are not multiples of {value} (SD's {what}), "
                f"so its attention and GroupNorms cannot be inferred. "
                f"Received: widths {block_channels}"
            )
    return {
        "block_channels": block_channels,
        "layers_per_block": per_level.pop(),
        "attention_levels": attention_levels,
        "context_dim": context_dim,
        **heads,
        "transformer_projection": "conv" if conv_projection else "linear",
        "transformer_depth": depth,
        "norm_groups": SD_NORM_GROUPS,
        "latent_channels": TEXT_TO_IMAGE_INPUT_CHANNELS,
        # An inpainting UNet also reads the mask and the masked image's latents.
        **(
            {"input_channels": INPAINTING_INPUT_CHANNELS}
            if tensors[CONV_IN].shape[1] == INPAINTING_INPUT_CHANNELS
            else {}
        ),
        **diffusers_unet_numerics(),
    }


def vae_arguments_from_tensors(tensors, source):
    prefix = LDM_VAE_PREFIX
    if prefix + "encoder.conv_in.weight" not in tensors:
        raise CheckpointFormatError(
            f"{source} has no VAE (no `{prefix}encoder.conv_in.weight`); the studio "
            "imports whole checkpoints."
        )
    levels = count_tensors(tensors, prefix + "encoder.down.{}.block.0.conv1.weight")
    block_channels = [
        tensors[f"{prefix}encoder.down.{level}.block.0.conv2.weight"].shape[0]
        for level in range(levels)
    ]
    if any(channels % SD_NORM_GROUPS for channels in block_channels):
        raise UnsupportedModelError(
            f"{source}: SD's {SD_NORM_GROUPS} GroupNorm groups do not divide the VAE's "
            f"widths. Received: widths {block_channels}"
        )
    return {
        "block_channels": block_channels,
        "layers_per_block": count_tensors(tensors, prefix + "encoder.down.0.block.{}.conv1.weight"),
        "latent_channels": tensors[prefix + "post_quant_conv.weight"].shape[0],
        "norm_groups": SD_NORM_GROUPS,
        **diffusers_vae_numerics(),
    }


def count_tensors(tensors, pattern):
    """How many of `pattern.format(0)`, `pattern.format(1)`, ... exist, in a row."""
    count = 0
    while pattern.format(count) in tensors:
        count += 1
    return count


def _is_network_tensor(name, architecture):
    if name in IGNORED_NAMES or name.startswith(IGNORED_PREFIXES):
        return False
    if architecture["text_layout"] == OPEN_CLIP:
        last = architecture["text_encoder"]["num_layers"]
        if name.startswith(f"{LDM_OPEN_CLIP_PREFIX}transformer.resblocks.{last}."):
            return False  # The last block: SD 2.x reads the penultimate layer.
    return name.startswith((LDM_UNET_PREFIX, LDM_VAE_PREFIX, TEXT_PREFIX))


def _prediction_and_size(family, metadata, path, prediction_type, image_size):
    if prediction_type is None:
        prediction_type = MODELSPEC_PREDICTION_NAMES.get(metadata.get(MODELSPEC_PREDICTION))
    if image_size is None:
        match = re.fullmatch(r"(\d+)x(\d+)", metadata.get(MODELSPEC_RESOLUTION, ""))
        image_size = int(match.group(1)) if match else None
    if family == SD_1:
        return prediction_type or "epsilon", image_size or SD_1_IMAGE_SIZE
    if prediction_type is None and image_size is None:
        name = os.path.basename(path).lower()
        if any(hint in name for hint in SD_2_BASE_NAME_HINTS):
            return "epsilon", SD_2_BASE_IMAGE_SIZE
        return "v_prediction", SD_2_V_IMAGE_SIZE
    if prediction_type is None:
        prediction_type = "v_prediction" if image_size >= SD_2_V_IMAGE_SIZE else "epsilon"
    if image_size is None:
        image_size = (
            SD_2_V_IMAGE_SIZE if prediction_type == "v_prediction" else SD_2_BASE_IMAGE_SIZE
        )
    return prediction_type, image_size


def _tokenizer(vocabulary, architecture, source):
    from studio.tokenizers import CLIPTokenizer

    arguments = architecture["text_encoder"]
    rows, length = arguments["vocabulary_size"], arguments["sequence_length"]
    if vocabulary is not None and is_hf_tokenizer_folder(os.fspath(vocabulary)):
        tokenizer = read_hf_tokenizer(os.fspath(vocabulary), sequence_length=length)
    else:
        if rows < CLIP_VOCABULARY_SIZE:
            raise CheckpointFormatError(
                f"{source}: the text encoder has {rows} token rows, fewer than CLIP's "
                f"{CLIP_VOCABULARY_SIZE}-token vocabulary; give its tokenizer as a Hugging "
                "Face tokenizer folder (vocab.json, merges.txt)."
            )
        pad = OPEN_CLIP_PAD_TOKEN if architecture["text_layout"] == OPEN_CLIP else END_TOKEN
        tokenizer = CLIPTokenizer.from_vocabulary_file(
            vocabulary, sequence_length=length, pad_token=pad
        )
    if tokenizer.vocabulary_size > rows:
        raise CheckpointFormatError(
            f"{source}: the tokenizer has {tokenizer.vocabulary_size} tokens, the text "
            f"encoder only {rows} embedding rows."
        )
    return tokenizer


def _check_expressible(backbone):
    """Raises when a single file would not record what the backbone computes."""
    unet, encoder = backbone.unet, backbone.text_encoder
    if unet.transformer_projection == "conv":
        expected_heads = [SD_1_UNET_HEADS] * len(unet.block_channels)
    else:
        expected_heads = [c // SD_2_UNET_HEAD_SIZE for c in unet.block_channels]
    if unet.num_heads is not None:
        heads = [unet.num_heads] * len(unet.block_channels)
    else:
        heads = [c // unet.head_size for c in unet.block_channels]
    differences = []
    if heads != expected_heads:
        differences.append(f"UNet heads per level {heads} (readers assume {expected_heads})")
    for name, groups in (("UNet", unet.norm_groups), ("VAE", backbone.vae_encoder.norm_groups)):
        if groups != SD_NORM_GROUPS:
            differences.append(f"{name} norm_groups={groups} (readers assume {SD_NORM_GROUPS})")
    # Only the residual blocks' epsilon: readers always compute the
    # transformers' and the VAE's, and GELU, their way (see
    # `unet_config_to_diffusers`), whatever the networks here use.
    if unet.resnet_norm_epsilon != DIFFUSERS_UNET_NORM_EPSILON:
        differences.append(
            f"UNet resnet_norm_epsilon={unet.resnet_norm_epsilon} "
            f"(readers assume {DIFFUSERS_UNET_NORM_EPSILON})"
        )
    if encoder.num_heads * CLIP_HEAD_SIZE != encoder.hidden_dim:
        differences.append(
            f"text encoder num_heads={encoder.num_heads} for width {encoder.hidden_dim} "
            f"(readers assume {CLIP_HEAD_SIZE}-wide heads)"
        )
    if encoder.layer_norm_epsilon != CLIP_LAYER_NORM_EPSILON:
        differences.append(f"text encoder layer_norm_epsilon={encoder.layer_norm_epsilon}")
    if backbone.latent_scale != SD_LATENT_SCALE:
        differences.append(
            f"latent_scale={backbone.latent_scale} (readers assume {SD_LATENT_SCALE})"
        )
    schedule = {
        key: backbone.noise_schedule.get(key, value) for key, value in SD_NOISE_SCHEDULE.items()
    }
    if schedule != SD_NOISE_SCHEDULE:
        differences.append(f"noise_schedule={schedule} (readers assume {SD_NOISE_SCHEDULE})")
    if differences:
        raise InvalidInputError(
            "A single file does not record these settings, and readers (diffusers, "
            "AUTOMATIC1111, the studio) would assume Stable Diffusion's instead; export "
            "this model as a diffusers folder (--format diffusers). Received: "
            + "; ".join(differences)
        )


def _identity_open_clip_block(encoder):
    """An OpenCLIP transformer block whose output is its input (see export)."""
    width, hidden = encoder.hidden_dim, encoder.intermediate_dim
    block = f"{LDM_OPEN_CLIP_PREFIX}transformer.resblocks.{encoder.num_layers}."
    shapes = {
        "ln_1.weight": ((width,), np.ones),
        "ln_1.bias": ((width,), np.zeros),
        "attn.in_proj_weight": ((3 * width, width), np.zeros),
        "attn.in_proj_bias": ((3 * width,), np.zeros),
        "attn.out_proj.weight": ((width, width), np.zeros),
        "attn.out_proj.bias": ((width,), np.zeros),
        "ln_2.weight": ((width,), np.ones),
        "ln_2.bias": ((width,), np.zeros),
        "mlp.c_fc.weight": ((hidden, width), np.zeros),
        "mlp.c_fc.bias": ((hidden,), np.zeros),
        "mlp.c_proj.weight": ((width, hidden), np.zeros),
        "mlp.c_proj.bias": ((width,), np.zeros),
    }
    return [
        (block + name, shape, lambda shape=shape, fill=fill: fill(shape, "float32"))
        for name, (shape, fill) in shapes.items()
    ]


def _modelspec(backbone, open_clip):
    v_prediction = backbone.prediction_type == "v_prediction"
    if open_clip:
        architecture = "stable-diffusion-v2-768-v" if v_prediction else "stable-diffusion-v2-512"
        implementation = "https://github.com/Stability-AI/stablediffusion"
    else:
        architecture = "stable-diffusion-v1"
        implementation = "https://github.com/CompVis/stable-diffusion"
    return {
        "modelspec.sai_model_spec": MODELSPEC_VERSION,
        "modelspec.architecture": architecture,
        "modelspec.implementation": implementation,
        "modelspec.title": str(backbone.name),
        "modelspec.resolution": f"{backbone.image_size}x{backbone.image_size}",
        MODELSPEC_PREDICTION: "v" if v_prediction else "epsilon",
    }
