"""Translates diffusers / transformers `config.json` files to our networks' arguments, and back.

Each `*_from_*` function checks every setting that changes what the
network computes, and raises `UnsupportedModelError` naming the settings
our networks cannot express (SD-XL's added embeddings, instruct-pix2pix's
8 input channels, ...); SD inpainting UNets (9 input channels) import, so nothing is silently computed otherwise.
The networks they describe compute with diffusers' numerics (GroupNorm
epsilons, exact GELU), not with KerasCV's that our networks default to,
so that an imported model gives what diffusers gives.
The `*_to_*` functions write configs that diffusers and transformers load.
"""

import math

from studio.interop.unsupported_model_error import UnsupportedModelError

# Written into exported configs; informational for diffusers and transformers.
DIFFUSERS_VERSION = "0.30.0"
TRANSFORMERS_VERSION = "4.44.0"
SD_LATENT_SCALE = 0.18215
SD_NOISE_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}
SUPPORTED_BETA_SCHEDULES = ("linear", "scaled_linear")
PREDICTION_TYPES = ("epsilon", "v_prediction")

CROSS_ATTENTION_DOWN = "CrossAttnDownBlock2D"
PLAIN_DOWN = "DownBlock2D"
CROSS_ATTENTION_UP = "CrossAttnUpBlock2D"
PLAIN_UP = "UpBlock2D"
# UNet2DConditionModel settings our UNet computes only with these values
# (diffusers' defaults for SD 1.x / 2.x); an absent setting has its default.
UNET_FIXED_SETTINGS = {
    "act_fn": "silu",
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "resnet_time_scale_shift": "default",
    "time_embedding_type": "positional",
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "dual_cross_attention": False,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "class_embed_type": None,
    "num_class_embeds": None,
    "addition_embed_type": None,
    "encoder_hid_dim": None,
    "time_cond_proj_dim": None,
    "time_embedding_dim": None,
    "timestep_post_act": None,
    "attention_type": "default",
    "cross_attention_norm": None,
    "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0,
    "class_embeddings_concat": False,
    "time_embedding_act_fn": None,
    "projection_class_embeddings_input_dim": None,
    "addition_time_embed_dim": None,
    "reverse_transformer_layers_per_block": None,
}
# AutoencoderKL settings our VAE computes only with these values.
VAE_FIXED_SETTINGS = {
    "in_channels": 3,
    "out_channels": 3,
    "act_fn": "silu",
    "shift_factor": None,
    "use_quant_conv": True,
    "use_post_quant_conv": True,
    "mid_block_add_attention": True,
    "latents_mean": None,
    "latents_std": None,
}
VAE_DOWN = "DownEncoderBlock2D"
VAE_UP = "UpDecoderBlock2D"
# Hugging Face activation names -> ours (`CLIPTextEncoder.intermediate_activation`).
TEXT_ACTIVATIONS = {
    "quick_gelu": "quick_gelu",
    "gelu": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
}
TEXT_ACTIVATION_NAMES = {
    "quick_gelu": "quick_gelu",
    "gelu": "gelu",
    "gelu_approximate": "gelu_pytorch_tanh",
}
SD_XL_CONTEXT_DIM = 2048
SD_XL_ADDED_EMBEDDING = "text_time"
SD_XL_NUM_TIME_IDS = 6
# UNet settings that SDXL's added conditioning sets (otherwise fixed at None).
SD_XL_ADDED_SETTINGS = (
    "addition_embed_type",
    "addition_time_embed_dim",
    "projection_class_embeddings_input_dim",
)
INPAINTING_INPUT_CHANNELS = 9
# diffusers' numerics (the original SD code's too), which imported networks
# compute with so that they give what diffusers gives. Our networks default
# to KerasCV's (`studio.models.numerics_arguments`).
# `UNet2DConditionModel.norm_eps` when a config lacks it: the residual
# blocks' and the output GroupNorms.
DIFFUSERS_UNET_NORM_EPSILON = 1e-5
# Fixed in diffusers' code, not in any config: `Transformer2DModel`'s
# GroupNorm and every GroupNorm of `AutoencoderKL`.
DIFFUSERS_TRANSFORMER_NORM_EPSILON = 1e-6
DIFFUSERS_VAE_NORM_EPSILON = 1e-6
# diffusers' GEGLU computes the exact (erf) GELU.
DIFFUSERS_GELU_APPROXIMATE = False


def unet_arguments_from_diffusers(config, source):
    """Our `UNet` arguments from a `UNet2DConditionModel` config.

    Args:
        config: the parsed `unet/config.json`.
        source: where it comes from, for messages.

    Returns:
        `(arguments, sample_size)`: a dict for `studio.models.UNet` and the
        latent size the model was trained at (None if the config lacks it).

    Raises:
        UnsupportedModelError: for SD-XL, instruct-pix2pix and other UNets, naming
            the settings found.
    """
    class_name = config.get("_class_name", "UNet2DConditionModel")
    if class_name != "UNet2DConditionModel":
        raise UnsupportedModelError(
            f"{source}: a {class_name}, not the UNet2DConditionModel of Stable "
            f"Diffusion 1.x / 2.x. Received: _class_name={class_name!r}"
        )
    in_channels = config.get("in_channels", 4)
    out_channels = config.get("out_channels", 4)
    added = _added_conditioning(config, source)
    inpainting = in_channels == INPAINTING_INPUT_CHANNELS and out_channels == 4
    if in_channels != out_channels and not inpainting:
        raise UnsupportedModelError(
            f"{source}: a UNet with {in_channels} input and {out_channels} output "
            "channels (e.g. instruct-pix2pix, depth-to-image or an upscaler); the "
            "studio supports text-to-image UNets, whose inputs and outputs are the "
            f"latents. Received: in_channels={in_channels}, out_channels={out_channels}"
        )
    fixed = UNET_FIXED_SETTINGS
    if added:
        fixed = {key: value for key, value in fixed.items() if key not in SD_XL_ADDED_SETTINGS}
    _check_fixed(config, fixed, source, "UNet")
    norm_epsilon = config.get("norm_eps", DIFFUSERS_UNET_NORM_EPSILON)
    numeric = isinstance(norm_epsilon, (int, float)) and not isinstance(norm_epsilon, bool)
    if not (numeric and 0 < norm_epsilon < math.inf):
        raise UnsupportedModelError(
            f"{source}: the UNet's `norm_eps` must be a positive number. "
            f"Received: norm_eps={norm_epsilon!r}"
        )
    only_cross = config.get("only_cross_attention", False)
    if any(only_cross if isinstance(only_cross, list) else [only_cross]):
        raise UnsupportedModelError(
            f"{source}: the UNet's transformers skip self-attention "
            f"(only_cross_attention={only_cross!r}), which ours always have."
        )

    block_channels = list(config["block_out_channels"])
    num_levels = len(block_channels)
    down_types = list(config.get("down_block_types", []))
    up_types = list(config.get("up_block_types", []))
    attention_levels = [kind == CROSS_ATTENTION_DOWN for kind in down_types]
    expected_up = [CROSS_ATTENTION_UP if a else PLAIN_UP for a in reversed(attention_levels)]
    if (
        len(down_types) != num_levels
        or any(kind not in (CROSS_ATTENTION_DOWN, PLAIN_DOWN) for kind in down_types)
        or up_types != expected_up
    ):
        raise UnsupportedModelError(
            f"{source}: UNet blocks other than SD's ({CROSS_ATTENTION_DOWN} / "
            f"{PLAIN_DOWN} down, mirrored {CROSS_ATTENTION_UP} / {PLAIN_UP} up). "
            f"Received: down_block_types={down_types}, up_block_types={up_types}"
        )
    layers_per_block = _same_for_all(config.get("layers_per_block", 2), "layers_per_block", source)
    depth = _depth_per_level(config.get("transformer_layers_per_block", 1), num_levels, source)
    context_dim = config.get("cross_attention_dim", 1280)
    if not isinstance(context_dim, int):
        raise UnsupportedModelError(
            f"{source}: per-level cross_attention_dim is not supported. "
            f"Received: cross_attention_dim={context_dim!r}"
        )
    arguments = {
        "block_channels": block_channels,
        "layers_per_block": layers_per_block,
        "attention_levels": attention_levels,
        "context_dim": context_dim,
        **_heads(config, block_channels, source),
        "transformer_projection": "linear" if config.get("use_linear_projection") else "conv",
        "transformer_depth": depth,
        "norm_groups": config.get("norm_num_groups", 32),
        "latent_channels": out_channels,
        # An inpainting UNet also reads the mask and the masked image's latents.
        **({"input_channels": in_channels} if inpainting else {}),
        **added,
        **diffusers_unet_numerics(norm_epsilon),
    }
    return arguments, config.get("sample_size")


def _added_conditioning(config, source):
    """SDXL's added-conditioning arguments of our `UNet` (empty for SD 1.x / 2.x).

    The pooled text width is not in the config: it is what is left of
    `projection_class_embeddings_input_dim` after the ids' features, with
    SDXL base's 6 ids (the refiner's 5 give another split; it is refused
    before, by its pipeline).
    """
    kind = config.get("addition_embed_type")
    if kind is None:
        return {}
    if kind != SD_XL_ADDED_EMBEDDING:
        raise UnsupportedModelError(
            f"{source}: the UNet's added embedding must be SD-XL's "
            f"{SD_XL_ADDED_EMBEDDING!r}. Received: addition_embed_type={kind!r}"
        )
    time_ids_dim = config.get("addition_time_embed_dim")
    features = config.get("projection_class_embeddings_input_dim")
    if not isinstance(time_ids_dim, int) or not isinstance(features, int):
        raise UnsupportedModelError(
            f"{source}: an SD-XL UNet (addition_embed_type='text_time') needs "
            "`addition_time_embed_dim` and "
            "`projection_class_embeddings_input_dim`. Received: "
            f"addition_time_embed_dim={time_ids_dim!r}, "
            f"projection_class_embeddings_input_dim={features!r}"
        )
    pooled = features - SD_XL_NUM_TIME_IDS * time_ids_dim
    if pooled <= 0:
        raise UnsupportedModelError(
            f"{source}: {features} added-embedding features leave no room for a pooled "
            f"text vector beside {SD_XL_NUM_TIME_IDS} ids of {time_ids_dim}. Received: "
            f"projection_class_embeddings_input_dim={features}"
        )
    return {
        "pooled_text_dim": pooled,
        "time_ids_dim": time_ids_dim,
        "num_time_ids": SD_XL_NUM_TIME_IDS,
    }


def _depth_per_level(value, num_levels, source):
    """`transformer_layers_per_block` as our `transformer_depth`: an int, or one per level."""
    if not isinstance(value, (list, tuple)):
        return value
    depths = list(value)
    if len(depths) != num_levels or any(not isinstance(d, int) for d in depths):
        raise UnsupportedModelError(
            f"{source}: one transformer depth per level expected (nested lists, per "
            f"block, are not supported). Received: transformer_layers_per_block={value!r}"
        )
    return depths[0] if len(set(depths)) == 1 else depths


def diffusers_unet_numerics(norm_epsilon=DIFFUSERS_UNET_NORM_EPSILON):
    """Our `UNet`'s numerics arguments that make it compute as diffusers'.

    Args:
        norm_epsilon: `UNet2DConditionModel.norm_eps` (the residual blocks'
            and output GroupNorms'); the transformers' GroupNorm epsilon is
            fixed in diffusers' code.
    """
    return {
        "resnet_norm_epsilon": float(norm_epsilon),
        "transformer_norm_epsilon": DIFFUSERS_TRANSFORMER_NORM_EPSILON,
        "gelu_approximate": DIFFUSERS_GELU_APPROXIMATE,
    }


def diffusers_vae_numerics():
    """Our `VAEEncoder` / `VAEDecoder` numerics arguments that match `AutoencoderKL`."""
    return {"norm_epsilon": DIFFUSERS_VAE_NORM_EPSILON}


def unet_config_to_diffusers(unet, sample_size):
    """A `UNet2DConditionModel` config for our `UNet`.

    `norm_eps` records the residual blocks' epsilon. The transformers'
    GroupNorm epsilon and GELU form have no setting in diffusers, which
    always computes its own (1e-6, exact); a UNet with KerasCV's numerics
    (the presets) gives outputs about 1e-4 apart there, as the same weights
    do in KerasCV and diffusers.
    """
    if unet.num_heads is not None:
        heads = unet.num_heads
    else:
        heads = [channels // unet.head_size for channels in unet.block_channels]
    return {
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": DIFFUSERS_VERSION,
        **{key: value for key, value in UNET_FIXED_SETTINGS.items() if value is not None},
        # diffusers' historical name: it holds the number of heads.
        "attention_head_dim": heads,
        "block_out_channels": list(unet.block_channels),
        "cross_attention_dim": unet.context_dim,
        "down_block_types": [
            CROSS_ATTENTION_DOWN if a else PLAIN_DOWN for a in unet.attention_levels
        ],
        "in_channels": unet.input_channels or unet.latent_channels,
        "layers_per_block": unet.layers_per_block,
        "norm_eps": unet.resnet_norm_epsilon,
        "norm_num_groups": unet.norm_groups,
        "only_cross_attention": False,
        "out_channels": unet.latent_channels,
        "sample_size": sample_size,
        "transformer_layers_per_block": unet.transformer_depth,
        "up_block_types": [
            CROSS_ATTENTION_UP if a else PLAIN_UP for a in reversed(unet.attention_levels)
        ],
        "upcast_attention": False,
        "use_linear_projection": unet.transformer_projection == "linear",
        **_added_conditioning_to_diffusers(unet),
    }


def _added_conditioning_to_diffusers(unet):
    if unet.pooled_text_dim is None:
        return {}
    return {
        "addition_embed_type": SD_XL_ADDED_EMBEDDING,
        "addition_time_embed_dim": unet.time_ids_dim,
        "projection_class_embeddings_input_dim": unet.pooled_text_dim
        + unet.num_time_ids * unet.time_ids_dim,
    }


def vae_arguments_from_diffusers(config, source):
    """Our `VAEEncoder` / `VAEDecoder` arguments from an `AutoencoderKL` config.

    Returns:
        `(arguments, latent_scale)`.

    Raises:
        UnsupportedModelError: for other autoencoders (SD 3's 16-channel VAE
            with a shift, ...), naming the settings found.
    """
    class_name = config.get("_class_name", "AutoencoderKL")
    if class_name != "AutoencoderKL":
        raise UnsupportedModelError(
            f"{source}: a {class_name}, not the AutoencoderKL of Stable Diffusion. "
            f"Received: _class_name={class_name!r}"
        )
    _check_fixed(config, VAE_FIXED_SETTINGS, source, "VAE")
    block_channels = list(config["block_out_channels"])
    down_types = list(config.get("down_block_types", [VAE_DOWN] * len(block_channels)))
    up_types = list(config.get("up_block_types", [VAE_UP] * len(block_channels)))
    if down_types != [VAE_DOWN] * len(block_channels) or up_types != [VAE_UP] * len(block_channels):
        raise UnsupportedModelError(
            f"{source}: VAE blocks other than {VAE_DOWN} / {VAE_UP}, one per entry of "
            f"block_out_channels. Received: down_block_types={down_types}, "
            f"up_block_types={up_types}"
        )
    arguments = {
        "block_channels": block_channels,
        "layers_per_block": config.get("layers_per_block", 1),
        "latent_channels": config.get("latent_channels", 4),
        "norm_groups": config.get("norm_num_groups", 32),
        **diffusers_vae_numerics(),
    }
    return arguments, config.get("scaling_factor", SD_LATENT_SCALE)


def vae_config_to_diffusers(encoder, latent_scale, image_size):
    """An `AutoencoderKL` config for our `VAEEncoder` (and its decoder).

    `AutoencoderKL` has no epsilon setting: diffusers computes with 1e-6
    whatever `encoder.norm_epsilon` is.
    """
    levels = len(encoder.block_channels)
    return {
        "_class_name": "AutoencoderKL",
        "_diffusers_version": DIFFUSERS_VERSION,
        **{key: value for key, value in VAE_FIXED_SETTINGS.items() if value is not None},
        "block_out_channels": list(encoder.block_channels),
        "down_block_types": [VAE_DOWN] * levels,
        "up_block_types": [VAE_UP] * levels,
        "latent_channels": encoder.latent_channels,
        "layers_per_block": encoder.layers_per_block,
        "norm_num_groups": encoder.norm_groups,
        "sample_size": image_size,
        "scaling_factor": latent_scale,
    }


def text_encoder_arguments_from_transformers(config, source):
    """Our `CLIPTextEncoder` arguments from a `CLIPTextConfig`.

    Raises:
        UnsupportedModelError: for an activation our encoder lacks.
    """
    config = config.get("text_config", config)
    activation = config.get("hidden_act", "quick_gelu")
    if activation not in TEXT_ACTIVATIONS:
        raise UnsupportedModelError(
            f"{source}: the text encoder's activation must be one of "
            f"{sorted(TEXT_ACTIVATIONS)}. Received: hidden_act={activation!r}"
        )
    return {
        "vocabulary_size": config.get("vocab_size", 49408),
        "sequence_length": config.get("max_position_embeddings", 77),
        "hidden_dim": config.get("hidden_size", 512),
        "num_layers": config.get("num_hidden_layers", 12),
        "num_heads": config.get("num_attention_heads", 8),
        "intermediate_dim": config.get("intermediate_size", 2048),
        "intermediate_activation": TEXT_ACTIVATIONS[activation],
        "layer_norm_epsilon": config.get("layer_norm_eps", 1e-5),
    }


def text_encoder_config_to_transformers(encoder, tokenizer):
    """A `CLIPTextConfig` (config.json of `text_encoder/`) for our encoder."""
    return {
        "architectures": ["CLIPTextModel"],
        "model_type": "clip_text_model",
        "transformers_version": TRANSFORMERS_VERSION,
        "torch_dtype": "float32",
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "hidden_act": TEXT_ACTIVATION_NAMES[encoder.intermediate_activation],
        "hidden_size": encoder.hidden_dim,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": encoder.intermediate_dim,
        "layer_norm_eps": encoder.layer_norm_epsilon,
        "max_position_embeddings": encoder.sequence_length,
        "num_attention_heads": encoder.num_heads,
        "num_hidden_layers": encoder.num_layers,
        "projection_dim": encoder.hidden_dim,
        "vocab_size": encoder.vocabulary_size,
        "bos_token_id": tokenizer.start_token_id,
        "eos_token_id": tokenizer.end_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def noise_schedule_from_diffusers(config, source):
    """`(noise_schedule, prediction_type)` from a diffusers scheduler config.

    An empty config (no `scheduler/` folder) gives SD's schedule and epsilon.

    Raises:
        UnsupportedModelError: a beta schedule our samplers lack.
    """
    if config.get("trained_betas") is not None:
        raise UnsupportedModelError(
            f"{source}: a scheduler with explicit `trained_betas`; the studio supports "
            f"the beta schedules {SUPPORTED_BETA_SCHEDULES}."
        )
    schedule = {key: config.get(key, default) for key, default in SD_NOISE_SCHEDULE.items()}
    if schedule["beta_schedule"] not in SUPPORTED_BETA_SCHEDULES:
        raise UnsupportedModelError(
            f"{source}: `beta_schedule` must be one of {SUPPORTED_BETA_SCHEDULES}. "
            f"Received: beta_schedule={schedule['beta_schedule']!r}"
        )
    prediction_type = config.get("prediction_type", "epsilon")
    if prediction_type not in PREDICTION_TYPES:
        raise UnsupportedModelError(
            f"{source}: `prediction_type` must be one of {PREDICTION_TYPES}. "
            f"Received: prediction_type={prediction_type!r}"
        )
    return schedule, prediction_type


def scheduler_config_to_diffusers(noise_schedule, prediction_type):
    """A `DDIMScheduler` config with the backbone's training noise schedule."""
    return {
        "_class_name": "DDIMScheduler",
        "_diffusers_version": DIFFUSERS_VERSION,
        **{key: noise_schedule.get(key, default) for key, default in SD_NOISE_SCHEDULE.items()},
        "prediction_type": prediction_type,
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "timestep_spacing": "leading",
    }


def _check_fixed(config, fixed, source, component):
    different = [
        f"{key}={config[key]!r} (supported: {value!r})"
        for key, value in fixed.items()
        if key in config and config[key] != value
    ]
    if different:
        raise UnsupportedModelError(
            f"{source}: {component} settings that the studio's networks do not "
            f"compute. Received: {', '.join(different)}"
        )


def _same_for_all(value, name, source):
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise UnsupportedModelError(
                f"{source}: a different `{name}` per level is not supported. "
                f"Received: {name}={list(value)}"
            )
        return value[0]
    return value


def _heads(config, block_channels, source):
    """`num_heads` (same count per level) or `head_size` (same size)."""
    # diffusers' `attention_head_dim` is, for SD, the number of heads; newer
    # configs may say so as `num_attention_heads`.
    heads = config.get("num_attention_heads") or config.get("attention_head_dim", 8)
    if not isinstance(heads, (list, tuple)):
        return {"num_heads": heads}
    heads = list(heads)
    if len(heads) != len(block_channels):
        raise UnsupportedModelError(
            f"{source}: one head count per level expected. Received: "
            f"attention_head_dim={heads}, block_out_channels={block_channels}"
        )
    if len(set(heads)) == 1:
        return {"num_heads": heads[0]}
    sizes = {channels // count for channels, count in zip(block_channels, heads)}
    if len(sizes) != 1 or any(c % n for c, n in zip(block_channels, heads)):
        raise UnsupportedModelError(
            f"{source}: attention heads must be the same number, or the same size, "
            f"on every level. Received: attention_head_dim={heads}, "
            f"block_out_channels={block_channels}"
        )
    return {"head_size": sizes.pop()}
