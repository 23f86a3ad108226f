"""Imports a diffusers SDXL folder into an `SDXLBackbone`, and exports one.

An SDXL folder (what `StableDiffusionXLPipeline.save_pretrained` writes) is
an SD folder with a second text encoder and tokenizer:

```
model_index.json     _class_name "StableDiffusionXLPipeline"
unet/                UNet2DConditionModel, addition_embed_type "text_time"
vae/                 AutoencoderKL (scaling_factor 0.13025)
text_encoder/        CLIPTextModel (ViT-L)
text_encoder_2/      CLIPTextModelWithProjection (OpenCLIP ViT-bigG)
tokenizer/           pads with the end token
tokenizer_2/         pads with "!"
scheduler/
```

Configs translate as for SD (`diffusers_configs`), weights go through the
same name tables; the SDXL-only parts are the UNet's added conditioning
(`add_embedding`) and bigG's `text_projection`. The refiner (one text
encoder, aesthetic-score ids) and the inpainting UNet are refused with the
reason.
"""

import os

from studio.interop.checkpoint_format_error import CheckpointFormatError
from studio.interop.diffusers_configs import (
    DIFFUSERS_VERSION,
    noise_schedule_from_diffusers,
    text_encoder_arguments_from_transformers,
    text_encoder_config_to_transformers,
    unet_arguments_from_diffusers,
    vae_arguments_from_diffusers,
)
from studio.interop.diffusers_folder import (
    CONFIG_FILE,
    MODEL_INDEX_FILE,
    SCHEDULER_CONFIG_FILE,
    component_tensors,
    load_networks,
    pipeline_index,
    read_config,
    read_json,
    text_encoder_prefix,
    write_diffusers_pipeline,
)
from studio.interop.hf_tokenizer_files import read_hf_tokenizer
from studio.interop.text_encoder_names import (
    DIFFUSERS_PREFIX,
    HUGGING_FACE,
    text_encoder_weight_names,
)
from studio.interop.unet_names import DIFFUSERS, unet_weight_names
from studio.interop.unsupported_model_error import UnsupportedModelError
from studio.interop.vae_names import (
    rename_deprecated_attention_keys,
    vae_decoder_weight_names,
    vae_encoder_weight_names,
)

SDXL_PIPELINE = "StableDiffusionXLPipeline"
SDXL_PIPELINES = {SDXL_PIPELINE, "StableDiffusionXLImg2ImgPipeline"}
SDXL_INPAINT_PIPELINE = "StableDiffusionXLInpaintPipeline"
SDXL_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
# SDXL's penultimate-layer, pooled text encoders (`CLIPTextEncoder` options).
SDXL_TEXT_OUTPUTS = {"hidden_states_layer": "penultimate", "return_pooled": True}
SDXL_IMAGE_SIZE = 1024


def is_sdxl_folder(folder):
    """True for a diffusers folder of an SDXL pipeline (its class or a `text_encoder_2/`)."""
    index_path = os.path.join(folder, MODEL_INDEX_FILE)
    index = read_json(index_path) if os.path.isfile(index_path) else {}
    return "XL" in str(index.get("_class_name", "")) or os.path.isdir(
        os.path.join(folder, "text_encoder_2")
    )


def import_sdxl_diffusers_folder(folder, prediction_type=None, dtype=None):
    """Builds an `SDXLBackbone` from a diffusers SDXL base folder.

    Args:
        folder: the folder (see the module docstring).
        prediction_type: None for the scheduler config's (epsilon if
            absent), or `"epsilon"` / `"v_prediction"`.
        dtype: the networks' dtype policy; None keeps Keras' global policy.

    Returns:
        A `studio.models.sdxl.SDXLBackbone`, named after the folder.

    Raises:
        UnsupportedModelError: the refiner, inpainting, or settings our
            networks do not compute.
        CheckpointFormatError: missing files or tensors, or networks that do
            not fit together.
    """
    from studio.models import CLIPTextEncoder, UNet, VAEDecoder, VAEEncoder
    from studio.models.sdxl import SDXLBackbone

    folder = os.fspath(folder)
    _check_pipeline(folder)
    unet_arguments, sample_size = unet_arguments_from_diffusers(
        read_config(folder, "unet", CONFIG_FILE), os.path.join(folder, "unet")
    )
    if unet_arguments.get("pooled_text_dim") is None:
        raise UnsupportedModelError(
            f"{folder}: an SD-XL pipeline whose UNet has no added conditioning "
            "(addition_embed_type='text_time'); the studio imports SDXL base models."
        )
    vae_arguments, latent_scale = vae_arguments_from_diffusers(
        read_config(folder, "vae", CONFIG_FILE), os.path.join(folder, "vae")
    )
    tokenizer = read_hf_tokenizer(os.path.join(folder, "tokenizer"))
    tokenizer_2 = read_hf_tokenizer(os.path.join(folder, "tokenizer_2"))
    encoders = {}
    for name, encoder_tokenizer in (("text_encoder", tokenizer), ("text_encoder_2", tokenizer_2)):
        config = read_config(folder, name, CONFIG_FILE)
        arguments = text_encoder_arguments_from_transformers(config, os.path.join(folder, name))
        arguments.update(SDXL_TEXT_OUTPUTS, end_token_id=encoder_tokenizer.end_token_id)
        if name == "text_encoder_2":
            arguments["projection_dim"] = config.get("projection_dim", arguments["hidden_dim"])
        if encoder_tokenizer.vocabulary_size > arguments["vocabulary_size"]:
            raise CheckpointFormatError(
                f"{folder}: {name}'s tokenizer has {encoder_tokenizer.vocabulary_size} "
                f"tokens, the encoder only {arguments['vocabulary_size']} embedding rows."
            )
        encoders[name] = arguments
    _check_fit(folder, unet_arguments, encoders)
    scheduler_path = os.path.join(folder, "scheduler", SCHEDULER_CONFIG_FILE)
    scheduler_config = read_json(scheduler_path) if os.path.isfile(scheduler_path) else {}
    noise_schedule, folder_prediction_type = noise_schedule_from_diffusers(
        scheduler_config, scheduler_path
    )

    policy = {} if dtype is None else {"dtype": dtype}
    text_encoder = CLIPTextEncoder(name="text_encoder", **encoders["text_encoder"], **policy)
    text_encoder_2 = CLIPTextEncoder(name="text_encoder_2", **encoders["text_encoder_2"], **policy)
    unet = UNet(name="unet", **unet_arguments, **policy)
    vae_encoder = VAEEncoder(name="vae_encoder", **vae_arguments, **policy)
    vae_decoder = VAEDecoder(name="vae_decoder", **vae_arguments, **policy)
    for name, encoder in (("text_encoder", text_encoder), ("text_encoder_2", text_encoder_2)):
        path = os.path.join(folder, name)
        tensors = component_tensors(path)
        prefix = text_encoder_prefix(tensors)
        if encoder.text_projection is not None:
            prefix = DIFFUSERS_PREFIX  # CLIPTextModelWithProjection always nests.
        load_networks(
            path, tensors, [(encoder, text_encoder_weight_names(encoder, HUGGING_FACE, prefix))]
        )
    path = os.path.join(folder, "unet")
    load_networks(path, component_tensors(path), [(unet, unet_weight_names(unet, DIFFUSERS))])
    path = os.path.join(folder, "vae")
    load_networks(
        path,
        rename_deprecated_attention_keys(component_tensors(path)),
        [
            (vae_encoder, vae_encoder_weight_names(vae_encoder, DIFFUSERS)),
            (vae_decoder, vae_decoder_weight_names(vae_decoder, DIFFUSERS)),
        ],
    )
    upsampling = vae_decoder.upsampling_factor
    return SDXLBackbone(
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        unet=unet,
        vae_encoder=vae_encoder,
        vae_decoder=vae_decoder,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        prediction_type=prediction_type or folder_prediction_type,
        latent_scale=latent_scale,
        image_size=sample_size * upsampling if sample_size else SDXL_IMAGE_SIZE,
        noise_schedule=noise_schedule,
        name=os.path.basename(os.path.normpath(folder)),
    )


def export_sdxl_diffusers_folder(backbone, folder, dtype="float32", overwrite=False):
    """Writes an `SDXLBackbone` as a folder `StableDiffusionXLPipeline.from_pretrained` loads.

    Args:
        backbone: a `studio.models.sdxl.SDXLBackbone` (LoRA layers written merged).
        folder: the folder to create (written under a temporary name, then
            renamed into place).
        dtype: `"float32"` or `"float16"`, the stored weights' dtype.
        overwrite: whether an existing, non-empty `folder` may be replaced.

    Returns:
        The folder's absolute path.
    """
    return write_diffusers_pipeline(
        backbone,
        folder,
        [
            ("text_encoder", "tokenizer", _text_encoder_config),
            ("text_encoder_2", "tokenizer_2", _text_encoder_config),
        ],
        _model_index(),
        dtype=dtype,
        overwrite=overwrite,
    )


def _text_encoder_config(encoder, tokenizer):
    config = text_encoder_config_to_transformers(encoder, tokenizer)
    if encoder.text_projection is not None:
        config["architectures"] = ["CLIPTextModelWithProjection"]
        config["projection_dim"] = encoder.projection_dim
    return config


def _model_index():
    return {
        "_class_name": SDXL_PIPELINE,
        "_diffusers_version": DIFFUSERS_VERSION,
        "feature_extractor": [None, None],
        "force_zeros_for_empty_prompt": True,
        "image_encoder": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


def _check_pipeline(folder):
    """Refuses the refiner and inpainting by name, and incomplete folders."""
    index, pipeline, components = pipeline_index(folder, SDXL_PIPELINE)
    if pipeline == SDXL_INPAINT_PIPELINE:
        raise UnsupportedModelError(
            f"{folder} is an SD-XL inpainting model ({pipeline}); the studio imports SDXL "
            "base text-to-image models."
        )
    if index.get("requires_aesthetics_score") or "text_encoder" not in components:
        raise UnsupportedModelError(
            f"{folder} is the SD-XL refiner (one text encoder, aesthetic-score "
            "conditioning); the studio imports SDXL base models. Received: components "
            f"{components}"
        )
    if pipeline not in SDXL_PIPELINES:
        raise UnsupportedModelError(
            f"{folder} holds a {pipeline}; the studio imports SD-XL pipelines "
            f"({sorted(SDXL_PIPELINES)})."
        )
    missing = [name for name in SDXL_COMPONENTS if name not in components]
    if missing:
        raise CheckpointFormatError(
            f"{folder} is not a complete diffusers SD-XL folder: it lacks {missing}. "
            f"Received: components {components}"
        )
    unet_config_path = os.path.join(folder, "unet", "config.json")
    in_channels = (read_json(unet_config_path).get("in_channels", 4)
                   if os.path.isfile(unet_config_path) else 4)
    if in_channels != 4:
        # SD 1.x/2.x inpainting UNets import; SD-XL's are not proven yet.
        raise UnsupportedModelError(
            f"{folder} has an SD-XL UNet with {in_channels} input channels (an inpainting "
            "model); the studio imports SD-XL base text-to-image models. "
            f"Received: in_channels={in_channels}"
        )


def _check_fit(folder, unet_arguments, encoders):
    widths = [encoders[name]["hidden_dim"] for name in ("text_encoder", "text_encoder_2")]
    pooled = encoders["text_encoder_2"]["projection_dim"]
    if unet_arguments["context_dim"] != sum(widths):
        raise CheckpointFormatError(
            f"{folder}: the UNet attends to {unet_arguments['context_dim']}-wide text "
            f"features, the two text encoders make {widths[0]} + {widths[1]}. Received: "
            f"cross_attention_dim={unet_arguments['context_dim']}"
        )
    if unet_arguments["pooled_text_dim"] != pooled:
        raise CheckpointFormatError(
            f"{folder}: the UNet's added embedding expects a {unet_arguments['pooled_text_dim']}"
            f"-wide pooled text vector, text_encoder_2 projects to {pooled}."
        )
