"""Imports a diffusers Stable Diffusion folder into a backbone, and exports one.

A diffusers folder (what `StableDiffusionPipeline.save_pretrained` writes):

```
model_index.json
unet/          config.json, diffusion_pytorch_model.safetensors (or .bin)
vae/           config.json, diffusion_pytorch_model.safetensors (or .bin)
text_encoder/  config.json, model.safetensors (or pytorch_model.bin)
tokenizer/     vocab.json, merges.txt, special_tokens_map.json, ...
scheduler/     scheduler_config.json
```

The architecture comes from the configs (`diffusers_configs`), the weight
names from the tables of `unet_names`, `vae_names` and
`text_encoder_names`. Imported networks compute with diffusers' numerics
(GroupNorm epsilons, exact GELU in the UNet), not the KerasCV ones our
networks default to, so they give what diffusers gives. Exported folders
are written under a temporary name and renamed into place.
"""

import os

from studio.files.atomic_write import atomic_folder
from studio.files.json_file import read_json_object, write_json
from studio.interop.checkpoint_format_error import CheckpointFormatError
from studio.interop.checkpoint_reader import quote_names, read_checkpoint
from studio.interop.diffusers_configs import (
    DIFFUSERS_VERSION,
    noise_schedule_from_diffusers,
    scheduler_config_to_diffusers,
    text_encoder_arguments_from_transformers,
    text_encoder_config_to_transformers,
    unet_arguments_from_diffusers,
    unet_config_to_diffusers,
    vae_arguments_from_diffusers,
    vae_config_to_diffusers,
)
from studio.interop.hf_tokenizer_files import read_hf_tokenizer, write_hf_tokenizer
from studio.tensor_files.safetensors_writer import write_safetensors
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
from studio.interop.weight_transfer import load_torch_weights, torch_weights

MODEL_INDEX_FILE = "model_index.json"
# `studio.models.presets.SDXL` (importing studio.interop must not import Keras).
SDXL_FAMILY = "sdxl"
CONFIG_FILE = "config.json"
SCHEDULER_CONFIG_FILE = "scheduler_config.json"
# Weight file names of each component folder, by library.
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model"
TRANSFORMERS_WEIGHTS = "model"
TRANSFORMERS_BIN_WEIGHTS = "pytorch_model"
SHARD_INDEX_SUFFIX = ".index.json"
# Variants diffusers saves beside (or instead of) the full-precision files.
WEIGHT_VARIANTS = ("fp16", "ema", "non_ema")
# A buffer of transformers' CLIP (0..76) that some files hold, not a weight.
IGNORED_BUFFER = "position_ids"
PIPELINE_CLASSES = {
    "StableDiffusionPipeline",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionInpaintPipeline",
    "StableDiffusionInpaintPipelineLegacy",
}
SAVED_PIPELINE = "StableDiffusionPipeline"
# diffusers' default latent size when a UNet config has no `sample_size`.
DEFAULT_SAMPLE_SIZE = 64


def is_diffusers_folder(path):
    """True when `path` is a folder with `model_index.json` or `unet/config.json`."""
    return os.path.isdir(path) and (
        os.path.isfile(os.path.join(path, MODEL_INDEX_FILE))
        or os.path.isfile(os.path.join(path, "unet", CONFIG_FILE))
    )


def import_diffusers_folder(folder, prediction_type=None, dtype=None):
    """Builds a `StableDiffusionBackbone` from a diffusers Stable Diffusion folder.

    Args:
        folder: the folder (see the module docstring).
        prediction_type: None to take `scheduler/scheduler_config.json`'s
            (epsilon if absent), or `"epsilon"` / `"v_prediction"`.
        dtype: the networks' dtype policy (e.g. `"mixed_float16"`); None
            keeps Keras' global policy.

    Returns:
        A `studio.models.StableDiffusionBackbone` with the folder's weights,
        named after the folder.

    Raises:
        UnsupportedModelError: SD-XL, SD 3, instruct-pix2pix and other models the
            studio lacks; the message names what was found.
        CheckpointFormatError: missing files or tensors, or shapes that do
            not fit the configs.
    """
    from studio.models import CLIPTextEncoder, StableDiffusionBackbone, UNet, VAEDecoder, VAEEncoder

    folder = os.fspath(folder)
    _check_pipeline(folder)
    unet_arguments, sample_size = unet_arguments_from_diffusers(
        read_config(folder, "unet", CONFIG_FILE), os.path.join(folder, "unet")
    )
    if unet_arguments.get("pooled_text_dim") is not None:
        raise UnsupportedModelError(
            f"{folder}: an SD-XL UNet (addition_embed_type='text_time': it takes pooled "
            "text and size ids) in a folder without SD-XL's second text encoder "
            "(text_encoder_2/); import a whole StableDiffusionXLPipeline folder."
        )
    vae_arguments, latent_scale = vae_arguments_from_diffusers(
        read_config(folder, "vae", CONFIG_FILE), os.path.join(folder, "vae")
    )
    text_arguments = text_encoder_arguments_from_transformers(
        read_config(folder, "text_encoder", CONFIG_FILE), os.path.join(folder, "text_encoder")
    )
    scheduler_path = os.path.join(folder, "scheduler", SCHEDULER_CONFIG_FILE)
    scheduler_config = read_json(scheduler_path) if os.path.isfile(scheduler_path) else {}
    noise_schedule, folder_prediction_type = noise_schedule_from_diffusers(
        scheduler_config, scheduler_path
    )
    if unet_arguments["context_dim"] != text_arguments["hidden_dim"]:
        raise CheckpointFormatError(
            f"{folder}: the UNet attends to {unet_arguments['context_dim']}-wide text "
            f"features, the text encoder makes {text_arguments['hidden_dim']}-wide ones. "
            f"Received: cross_attention_dim={unet_arguments['context_dim']}, "
            f"hidden_size={text_arguments['hidden_dim']}"
        )
    tokenizer = read_hf_tokenizer(
        os.path.join(folder, "tokenizer"), sequence_length=text_arguments["sequence_length"]
    )
    if tokenizer.vocabulary_size > text_arguments["vocabulary_size"]:
        raise CheckpointFormatError(
            f"{folder}: the tokenizer has {tokenizer.vocabulary_size} tokens, the text "
            f"encoder only {text_arguments['vocabulary_size']} embedding rows."
        )

    policy = {} if dtype is None else {"dtype": dtype}
    text_encoder = CLIPTextEncoder(name="text_encoder", **text_arguments, **policy)
    unet = UNet(name="unet", **unet_arguments, **policy)
    vae_encoder = VAEEncoder(name="vae_encoder", **vae_arguments, **policy)
    vae_decoder = VAEDecoder(name="vae_decoder", **vae_arguments, **policy)
    path = os.path.join(folder, "text_encoder")
    tensors = component_tensors(path)
    prefix = text_encoder_prefix(tensors)
    load_networks(
        path,
        tensors,
        [(text_encoder, text_encoder_weight_names(text_encoder, HUGGING_FACE, prefix))],
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
    return StableDiffusionBackbone(
        text_encoder=text_encoder,
        unet=unet,
        vae_encoder=vae_encoder,
        vae_decoder=vae_decoder,
        tokenizer=tokenizer,
        prediction_type=prediction_type or folder_prediction_type,
        latent_scale=latent_scale,
        image_size=(sample_size or DEFAULT_SAMPLE_SIZE) * upsampling,
        noise_schedule=noise_schedule,
        name=os.path.basename(os.path.normpath(folder)),
    )


def export_diffusers_folder(backbone, folder, dtype="float32", overwrite=False):
    """Writes `backbone` as a diffusers folder that `StableDiffusionPipeline` loads
    (`StableDiffusionXLPipeline` for an SDXL backbone).

    diffusers computes with its own numerics (see `unet_config_to_diffusers`):
    networks built with KerasCV's, as the presets are, give outputs about
    1e-4 apart there.

    Args:
        backbone: a `studio.models.StableDiffusionBackbone` (LoRA layers are
            written merged).
        folder: the folder to create.
        dtype: `"float32"` or `"float16"`, the stored weights' dtype.
        overwrite: whether an existing, non-empty `folder` may be replaced.

    Returns:
        The folder's absolute path.

    Raises:
        FileExistsError: `folder` exists and `overwrite` is False.
    """
    if getattr(backbone, "family", None) == SDXL_FAMILY:
        from studio.interop.sdxl_diffusers_folder import export_sdxl_diffusers_folder

        return export_sdxl_diffusers_folder(backbone, folder, dtype=dtype, overwrite=overwrite)
    return write_diffusers_pipeline(
        backbone,
        folder,
        [("text_encoder", "tokenizer", text_encoder_config_to_transformers)],
        _model_index(),
        dtype=dtype,
        overwrite=overwrite,
    )


def write_diffusers_pipeline(backbone, folder, text_encoders, model_index, dtype=None,
                             overwrite=False):
    """Writes `backbone` as a diffusers pipeline folder, atomically; returns its absolute path.

    The one writer of diffusers folders for every family: the UNet, the VAE,
    each text encoder with its tokenizer, the scheduler and `model_index`.

    Args:
        backbone: the backbone to write.
        folder: the pipeline folder.
        text_encoders: `(encoder attribute, tokenizer attribute,
            config(encoder, tokenizer) -> transformers config)` triples, in
            the order the pipeline names them ("text_encoder", "text_encoder_2").
        model_index: the `model_index.json` dict.
        dtype: dtype of the written tensors (None: as they are).
        overwrite: replace an existing `folder`.
    """
    unet = backbone.unet
    sample_size = backbone.image_size // backbone.vae_decoder.upsampling_factor
    with atomic_folder(folder, overwrite=overwrite) as staging:

        def component(name, config, weights_name, tensors):
            os.makedirs(os.path.join(staging, name))
            write_json(os.path.join(staging, name, CONFIG_FILE), config)
            write_safetensors(
                os.path.join(staging, name, f"{weights_name}.safetensors"),
                tensors,
                metadata={"format": "pt"},
                dtype=dtype,
            )

        component(
            "unet",
            unet_config_to_diffusers(unet, sample_size),
            DIFFUSERS_WEIGHTS,
            torch_weights(unet, unet_weight_names(unet, DIFFUSERS)),
        )
        component(
            "vae",
            vae_config_to_diffusers(
                backbone.vae_encoder, backbone.latent_scale, backbone.image_size
            ),
            DIFFUSERS_WEIGHTS,
            torch_weights(
                backbone.vae_encoder, vae_encoder_weight_names(backbone.vae_encoder, DIFFUSERS)
            )
            + torch_weights(
                backbone.vae_decoder, vae_decoder_weight_names(backbone.vae_decoder, DIFFUSERS)
            ),
        )
        for name, tokenizer_name, encoder_config in text_encoders:
            encoder, tokenizer = getattr(backbone, name), getattr(backbone, tokenizer_name)
            component(
                name,
                encoder_config(encoder, tokenizer),
                TRANSFORMERS_WEIGHTS,
                torch_weights(
                    encoder, text_encoder_weight_names(encoder, HUGGING_FACE, DIFFUSERS_PREFIX)
                ),
            )
            os.makedirs(os.path.join(staging, tokenizer_name))
            write_hf_tokenizer(tokenizer, os.path.join(staging, tokenizer_name))
        os.makedirs(os.path.join(staging, "scheduler"))
        write_json(
            os.path.join(staging, "scheduler", SCHEDULER_CONFIG_FILE),
            scheduler_config_to_diffusers(backbone.noise_schedule, backbone.prediction_type),
        )
        write_json(os.path.join(staging, MODEL_INDEX_FILE), model_index)
    return os.path.abspath(folder)


def _model_index():
    return {
        "_class_name": SAVED_PIPELINE,
        "_diffusers_version": DIFFUSERS_VERSION,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


def pipeline_index(folder, default_pipeline):
    """A diffusers folder's `model_index.json` (or {}), its pipeline class and its components.

    Returns:
        (index dict, pipeline class name, or `default_pipeline` when the
        folder has no index, sorted names of the component folders).
    """
    index_path = os.path.join(folder, MODEL_INDEX_FILE)
    index = read_json(index_path) if os.path.isfile(index_path) else {}
    components = sorted(
        name for name in os.listdir(folder) if os.path.isdir(os.path.join(folder, name))
    )
    return index, index.get("_class_name", default_pipeline), components


def _check_pipeline(folder):
    """Names SD-XL, SD 3 and other pipelines before any config is read."""
    _, pipeline, components = pipeline_index(folder, SAVED_PIPELINE)
    if "XL" in pipeline or "text_encoder_2" in components:
        raise UnsupportedModelError(
            f"{folder} is an SD-XL model ({pipeline}, with a second text encoder); the "
            f"studio supports Stable Diffusion 1.x and 2.x. Received: components {components}"
        )
    if "transformer" in components or "text_encoder_3" in components:
        raise UnsupportedModelError(
            f"{folder} is a diffusion-transformer model ({pipeline}, e.g. SD 3), not a "
            f"UNet; the studio supports Stable Diffusion 1.x and 2.x. Received: "
            f"components {components}"
        )
    if pipeline not in PIPELINE_CLASSES:
        raise UnsupportedModelError(
            f"{folder} holds a {pipeline}; the studio imports Stable Diffusion 1.x / "
            f"2.x pipelines ({sorted(PIPELINE_CLASSES)})."
        )
    missing = [
        name for name in ("unet", "vae", "text_encoder", "tokenizer") if name not in components
    ]
    if missing:
        raise CheckpointFormatError(
            f"{folder} is not a complete diffusers Stable Diffusion folder: it lacks "
            f"{missing}. Received: components {components}"
        )


def read_config(folder, component, name):
    path = os.path.join(folder, component, name)
    if not os.path.isfile(path):
        raise CheckpointFormatError(f"{os.path.join(folder, component)} has no {name}.")
    return read_json(path)


def read_json(path):
    return read_json_object(path, CheckpointFormatError)


def load_networks(path, tensors, tables):
    """Loads one component folder's tensors into its networks, checking that
    every tensor found a place.

    Args:
        path: the component folder, for messages.
        tensors: its tensors (emptied as they are loaded).
        tables: `(network, weight names)` pairs.
    """
    for network, names in tables:
        load_torch_weights(network, names, tensors, path)
    unused = {name for name in tensors if name.split(".")[-1] != IGNORED_BUFFER}
    if unused:
        raise CheckpointFormatError(
            f"{path} holds {len(unused)} tensors that its config does not account "
            f"for, so the model is not what the config says. Received: "
            f"{quote_names(unused)}"
        )


def component_tensors(path):
    """The tensors of a component folder: one file, or shards listed in an index."""
    for stem in (DIFFUSERS_WEIGHTS, TRANSFORMERS_WEIGHTS, TRANSFORMERS_BIN_WEIGHTS):
        for variant in ("", *(f".{v}" for v in WEIGHT_VARIANTS)):
            for suffix in (".safetensors", ".bin"):
                name = f"{stem}{variant}{suffix}"
                if os.path.isfile(os.path.join(path, name)):
                    return read_checkpoint(os.path.join(path, name))[0]
                if os.path.isfile(os.path.join(path, name + SHARD_INDEX_SUFFIX)):
                    return _sharded_tensors(path, name + SHARD_INDEX_SUFFIX)
    raise CheckpointFormatError(
        f"{path} holds no weight file: expected {DIFFUSERS_WEIGHTS}.safetensors, "
        f"{TRANSFORMERS_WEIGHTS}.safetensors or a .bin. Received: files "
        f"{sorted(os.listdir(path)) if os.path.isdir(path) else 'none'}"
    )


def _sharded_tensors(path, index_name):
    weight_map = read_json(os.path.join(path, index_name)).get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointFormatError(f"{os.path.join(path, index_name)} has no `weight_map`.")
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        if os.path.basename(shard) != shard:
            raise CheckpointFormatError(
                f"{os.path.join(path, index_name)}: shards must be files of the same "
                f"folder. Received: {shard!r}"
            )
        tensors.update(read_checkpoint(os.path.join(path, shard))[0])
    return tensors


def text_encoder_prefix(tensors):
    """`text_model.` (the published SD folders, transformers 4), or none:
    transformers 5 saves `CLIPTextModel` without it."""
    if f"{DIFFUSERS_PREFIX}embeddings.token_embedding.weight" in tensors:
        return DIFFUSERS_PREFIX
    return ""
