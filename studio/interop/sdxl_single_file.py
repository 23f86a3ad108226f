"""Imports SDXL single files (Stability AI's SGM layout) into an `SDXLBackbone`, and exports them.

`sd_xl_base_1.0.safetensors` and its fine-tunes hold, with no config
(names in `sdxl_single_file_names`): the UNet (`model.diffusion_model.`,
added conditioning as `label_emb.0`), CLIP ViT-L
(`conditioner.embedders.0.transformer.text_model.`), OpenCLIP ViT-bigG
(`conditioner.embedders.1.model.`) and the VAE (`first_stage_model.`).
The architecture is read from names and shapes as for SD files
(`single_file_checkpoint`), plus per-level transformer depths, the
added-conditioning widths and bigG's projection; what shapes cannot show
is SDXL base's: 64-wide heads everywhere, 32 GroupNorm groups, six size
ids, latent scale 0.13025, SD's noise schedule, epsilon prediction at
1024 px (unless ModelSpec metadata says otherwise). The refiner (bigG
alone, as `conditioner.embedders.0`) and inpainting UNets are refused.
"""

import os
import re

from studio.interop.checkpoint_format_error import CheckpointFormatError
from studio.interop.checkpoint_reader import quote_names
from studio.interop.diffusers_configs import SD_NOISE_SCHEDULE, SD_XL_NUM_TIME_IDS
from studio.interop.hf_tokenizer_files import is_hf_tokenizer_folder, read_hf_tokenizer
from studio.interop.sdxl_single_file_names import sdxl_single_file_weight_names
from studio.interop.single_file_checkpoint import (
    CLIP_HEAD_SIZE,
    CLIP_VOCABULARY_SIZE,
    END_TOKEN,
    MODELSPEC_PREDICTION,
    MODELSPEC_PREDICTION_NAMES,
    MODELSPEC_RESOLUTION,
    MODELSPEC_VERSION,
    OPEN_CLIP_PAD_TOKEN,
    SD_NORM_GROUPS,
    hugging_face_clip_arguments,
    open_clip_arguments,
    unet_arguments_from_tensors,
    vae_arguments_from_tensors,
)
from studio.interop.text_encoder_names import SGM_CLIP_PREFIX, SGM_OPEN_CLIP_PREFIX
from studio.interop.unet_names import LDM_UNET_PREFIX
from studio.interop.unsupported_model_error import UnsupportedModelError
from studio.interop.weight_transfer import load_torch_weights, torch_weights
from studio.tensor_files.safetensors_writer import write_safetensors

SGM_EMBEDDERS = "conditioner.embedders."
ADDED_CONDITIONING = LDM_UNET_PREFIX + "label_emb.0.0.weight"
SDXL_LATENT_SCALE = 0.13025
SDXL_IMAGE_SIZE = 1024
SDXL_OUTPUTS = {"hidden_states_layer": "penultimate", "return_pooled": True}
# Tensors of SDXL files that no network uses.
IGNORED_NAMES = {
    SGM_CLIP_PREFIX + "embeddings.position_ids",
    SGM_OPEN_CLIP_PREFIX + "logit_scale",
    SGM_OPEN_CLIP_PREFIX + "attn_mask",
}
IGNORED_PREFIXES = ("first_stage_model.loss.", SGM_OPEN_CLIP_PREFIX + "visual.")
NETWORK_PREFIXES = (LDM_UNET_PREFIX, "first_stage_model.", SGM_EMBEDDERS)


def is_sdxl_single_file(tensors):
    """True when a single file's tensors are laid out as SDXL's (SGM embedders)."""
    return any(name.startswith(SGM_EMBEDDERS) for name in tensors)


def import_sdxl_single_file(path, tensors, metadata, vocabulary=None, dtype=None):
    """Builds an `SDXLBackbone` from an SDXL base single file's tensors.

    Args:
        path: the file, for names and messages.
        tensors, metadata: what `read_checkpoint(path)` returned.
        vocabulary: the tokenizers' vocabulary: None for CLIP's from the
            Keras cache, a local `bpe_simple_vocab_16e6.txt.gz` (or its
            folder), or a Hugging Face tokenizer folder.
        dtype: the networks' dtype policy; None keeps Keras' global one.

    Raises:
        UnsupportedModelError: the refiner, inpainting, or a layout that is
            not SDXL base's.
        CheckpointFormatError: missing tensors or shapes that do not fit.
    """
    from studio.models import CLIPTextEncoder, UNet, VAEDecoder, VAEEncoder
    from studio.models.sdxl import SDXLBackbone

    architecture = describe_sdxl_single_file(tensors, path)
    tokenizer, tokenizer_2 = _tokenizers(vocabulary, architecture, path)
    policy = {} if dtype is None else {"dtype": dtype}
    end = {"end_token_id": tokenizer.end_token_id}
    networks = {
        "text_encoder": CLIPTextEncoder(
            name="text_encoder", **architecture["text_encoder"], **end, **policy
        ),
        "text_encoder_2": CLIPTextEncoder(
            name="text_encoder_2", **architecture["text_encoder_2"], **end, **policy
        ),
        "unet": UNet(name="unet", **architecture["unet"], **policy),
        "vae_encoder": VAEEncoder(name="vae_encoder", **architecture["vae"], **policy),
        "vae_decoder": VAEDecoder(name="vae_decoder", **architecture["vae"], **policy),
    }
    for name, network in networks.items():
        load_torch_weights(network, sdxl_single_file_weight_names(network, name), tensors, path)
    unused = [
        name
        for name in tensors
        if name.startswith(NETWORK_PREFIXES)
        and name not in IGNORED_NAMES
        and not name.startswith(IGNORED_PREFIXES)
    ]
    if unused:
        raise CheckpointFormatError(
            f"{path} holds {len(unused)} network tensors that an SD-XL base model has no "
            f"place for, so it is a variant the studio does not know. Received: "
            f"{quote_names(unused)}"
        )
    prediction_type = MODELSPEC_PREDICTION_NAMES.get(metadata.get(MODELSPEC_PREDICTION), "epsilon")
    match = re.fullmatch(r"(\d+)x(\d+)", metadata.get(MODELSPEC_RESOLUTION, ""))
    return SDXLBackbone(
        **networks,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        prediction_type=prediction_type,
        latent_scale=SDXL_LATENT_SCALE,
        image_size=int(match.group(1)) if match else SDXL_IMAGE_SIZE,
        noise_schedule=dict(SD_NOISE_SCHEDULE),
        name=os.path.splitext(os.path.basename(path))[0],
    )


def describe_sdxl_single_file(tensors, source):
    """Infers an SDXL single file's networks from its tensor names and shapes.

    Returns:
        A dict of constructor arguments: `text_encoder`, `text_encoder_2`,
        `unet`, `vae`.

    Raises:
        UnsupportedModelError, CheckpointFormatError: as `import_sdxl_single_file`.
    """
    names = list(tensors)
    if SGM_OPEN_CLIP_PREFIX + "token_embedding.weight" not in tensors:
        if f"{SGM_EMBEDDERS}0.model.token_embedding.weight" in tensors:
            raise UnsupportedModelError(
                f"{source} is the SD-XL refiner (OpenCLIP bigG alone, aesthetic-score "
                "conditioning); the studio imports SD-XL base models."
            )
        raise UnsupportedModelError(
            f"{source} has SD-XL's `conditioner.embedders.*` but not SD-XL base's OpenCLIP "
            f"bigG under `{SGM_OPEN_CLIP_PREFIX}`. Received: tensors such as "
            f"{quote_names(names)}"
        )
    if SGM_CLIP_PREFIX + "embeddings.token_embedding.weight" not in tensors:
        raise CheckpointFormatError(
            f"{source}: an SD-XL file without CLIP ViT-L under `{SGM_CLIP_PREFIX}`."
        )
    conv_in = tensors.get(LDM_UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is None or ADDED_CONDITIONING not in tensors:
        raise CheckpointFormatError(
            f"{source}: an SD-XL file needs its UNet (`{LDM_UNET_PREFIX}input_blocks.0.0.weight`"
            f" and the added conditioning `{ADDED_CONDITIONING}`)."
        )
    if conv_in.shape[1] != 4:
        what = "an inpainting model" if conv_in.shape[1] == 9 else "a variant"
        raise UnsupportedModelError(
            f"{source} is {what} of SD-XL ({conv_in.shape[1]} UNet input channels); the "
            "studio imports SD-XL base text-to-image models (4)."
        )
    text_encoder = dict(
        hugging_face_clip_arguments(tensors, SGM_CLIP_PREFIX, source), **SDXL_OUTPUTS
    )
    text_encoder_2 = open_clip_arguments(
        tensors, SGM_OPEN_CLIP_PREFIX, source, drop_last_block=False
    )
    projection = tensors.get(SGM_OPEN_CLIP_PREFIX + "text_projection")
    if projection is None:
        raise CheckpointFormatError(f"{source}: OpenCLIP bigG without its `text_projection`.")
    text_encoder_2.update(SDXL_OUTPUTS, projection_dim=projection.shape[1])
    unet = unet_arguments_from_tensors(tensors, source)
    features = tensors[ADDED_CONDITIONING].shape[1]
    pooled = projection.shape[1]
    time_ids_dim, remainder = divmod(features - pooled, SD_XL_NUM_TIME_IDS)
    if remainder or time_ids_dim <= 0 or time_ids_dim % 2:
        raise UnsupportedModelError(
            f"{source}: {features} added-conditioning features are not a {pooled}-wide "
            f"pooled text vector and {SD_XL_NUM_TIME_IDS} size ids."
        )
    unet.update(
        pooled_text_dim=pooled, time_ids_dim=time_ids_dim, num_time_ids=SD_XL_NUM_TIME_IDS
    )
    width = text_encoder["hidden_dim"] + text_encoder_2["hidden_dim"]
    if unet["context_dim"] != width:
        raise CheckpointFormatError(
            f"{source}: the UNet attends to {unet['context_dim']}-wide text features, the "
            f"two text encoders make {text_encoder['hidden_dim']} + "
            f"{text_encoder_2['hidden_dim']}."
        )
    return {
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "unet": unet,
        "vae": vae_arguments_from_tensors(tensors, source),
    }


def export_sdxl_single_file(backbone, path, dtype="float32", overwrite=False):
    """Writes an `SDXLBackbone` as an SGM `.safetensors` single file (A1111, ComfyUI, diffusers).

    Args:
        backbone: a `studio.models.sdxl.SDXLBackbone` (LoRA layers written merged).
        path: the file to write (atomically).
        dtype: `"float32"` or `"float16"`.
        overwrite: whether an existing file may be replaced.

    Raises:
        InvalidInputError: settings a single file cannot record (heads not
            64 wide, GroupNorm groups other than 32); a diffusers folder can.
        FileExistsError: `path` exists and `overwrite` is False.
    """
    from studio.errors import InvalidInputError

    path = os.fspath(path)
    unet = backbone.unet
    differences = []
    if unet.head_size != CLIP_HEAD_SIZE:
        differences.append(f"UNet head_size={unet.head_size} (readers assume {CLIP_HEAD_SIZE})")
    for label, encoder in (("text_encoder", backbone.text_encoder),
                           ("text_encoder_2", backbone.text_encoder_2)):
        if encoder.num_heads * CLIP_HEAD_SIZE != encoder.hidden_dim:
            differences.append(f"{label} heads not {CLIP_HEAD_SIZE} wide")
    for label, groups in (("UNet", unet.norm_groups), ("VAE", backbone.vae_encoder.norm_groups)):
        if groups != SD_NORM_GROUPS:
            differences.append(f"{label} norm_groups={groups} (readers assume {SD_NORM_GROUPS})")
    if differences:
        raise InvalidInputError(
            "A single file does not record these settings, and readers would assume "
            "SD-XL's; export this model as a diffusers folder (--format diffusers). "
            "Received: " + "; ".join(differences)
        )
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path} already exists; choose another output or allow overwriting "
            f"(--overwrite). Received: out={path!r}"
        )
    tensors = []
    for name, network in backbone.components.items():
        tensors += torch_weights(network, sdxl_single_file_weight_names(network, name))
    metadata = {
        "modelspec.sai_model_spec": MODELSPEC_VERSION,
        "modelspec.architecture": "stable-diffusion-xl-v1-base",
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
        "modelspec.title": str(backbone.name),
        MODELSPEC_RESOLUTION: f"{backbone.image_size}x{backbone.image_size}",
        MODELSPEC_PREDICTION: "v" if backbone.prediction_type == "v_prediction" else "epsilon",
    }
    return write_safetensors(path, tensors, metadata=metadata, dtype=dtype)


def _tokenizers(vocabulary, architecture, source):
    """The ViT-L tokenizer (pads with the end token) and bigG's (pads with "!")."""
    from studio.tokenizers import CLIPTokenizer

    length = architecture["text_encoder"]["sequence_length"]
    rows = min(
        architecture["text_encoder"]["vocabulary_size"],
        architecture["text_encoder_2"]["vocabulary_size"],
    )
    if vocabulary is not None and is_hf_tokenizer_folder(os.fspath(vocabulary)):
        tokenizer = read_hf_tokenizer(os.fspath(vocabulary), sequence_length=length)
        config = tokenizer.get_config()
        tokenizer = CLIPTokenizer.from_config(dict(config, pad_token=END_TOKEN))
        tokenizer_2 = CLIPTokenizer.from_config(dict(config, pad_token=OPEN_CLIP_PAD_TOKEN))
    else:
        if rows < CLIP_VOCABULARY_SIZE:
            raise CheckpointFormatError(
                f"{source}: the text encoders have {rows} token rows, fewer than CLIP's "
                f"{CLIP_VOCABULARY_SIZE}-token vocabulary; give their tokenizer as a "
                "Hugging Face tokenizer folder (vocab.json, merges.txt)."
            )
        tokenizer = CLIPTokenizer.from_vocabulary_file(
            vocabulary, sequence_length=length, pad_token=END_TOKEN
        )
        tokenizer_2 = CLIPTokenizer.from_vocabulary_file(
            vocabulary, sequence_length=length, pad_token=OPEN_CLIP_PAD_TOKEN
        )
    if tokenizer.vocabulary_size > rows:
        raise CheckpointFormatError(
            f"{source}: the tokenizer has {tokenizer.vocabulary_size} tokens, the text "
            f"encoders only {rows} embedding rows."
        )
    return tokenizer, tokenizer_2
