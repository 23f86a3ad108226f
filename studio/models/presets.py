"""Backbone presets: plain data, registered in one place.

Each preset names its model family, the class and constructor arguments of every network, the
tokenizer, what the UNet predicts, and where the published weights are.
`sd-v1` and `sd-v2` use the files KerasCV publishes for its
`StableDiffusion` (v1.4) and `StableDiffusionV2` (v2.1-base, 512 px,
epsilon prediction) models, with KerasCV's URLs and sha256 hashes, so a
notebook that already ran KerasCV finds them in its Keras cache.
"""

COMPONENTS = ("text_encoder", "unet", "vae_encoder", "vae_decoder")

# The model family of a preset: the key of `studio.models.FAMILIES`, whose
# backbone class builds it (SD 1.x, 2.x and the tiny presets share one).
STABLE_DIFFUSION = "stable_diffusion"
# SDXL: two text encoders, pooled text and size ids (`studio.models.sdxl`).
SDXL = "sdxl"

# SD's VAE latents are scaled to unit variance before the UNet sees them.
SD_LATENT_SCALE = 0.18215
# SDXL's VAE (SD's architecture, retrained) has its own scale.
SDXL_LATENT_SCALE = 0.13025

SD_NOISE_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}

_FCHOLLET = "https://huggingface.co/fchollet/stable-diffusion/resolve/main/"
_IANSTENBIT = "https://huggingface.co/ianstenbit/keras-sd2.1/resolve/main/"


def _weights(file_name, base, file_hash):
    return {"file_name": file_name, "origin": base + file_name, "file_hash": file_hash}


_VAE_WEIGHTS = {
    "vae_encoder": _weights(
        "vae_encoder.h5",
        _FCHOLLET,
        "c60fb220a40d090e0f86a6ab4c312d113e115c87c40ff75d11ffcf380aab7ebb",
    ),
    "vae_decoder": _weights(
        "kcv_decoder.h5",
        _FCHOLLET,
        "ad350a65cc8bc4a80c8103367e039a3329b4231c2469a1093869a345f55b1962",
    ),
}

_SD_VAE = {
    "block_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_groups": 32,
}
_SD_VAE_ENCODER = {"class_name": "VAEEncoder", "config": _SD_VAE}
_SD_VAE_DECODER = {"class_name": "VAEDecoder", "config": _SD_VAE}
_TINY_VAE = {
    "block_channels": [32, 32, 32, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_groups": 8,
}

# The shapes world's VAE: 32 px images to 8x8x4 latents (two stride-2
# levels); flat colours and edges need little width.
_SHAPES_VAE = {
    "block_channels": [16, 32, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_groups": 8,
}

_SD_V1_UNET = {
    "block_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_levels": [True, True, True, False],
    "context_dim": 768,
    "num_heads": 8,
    "transformer_projection": "conv",
    "norm_groups": 32,
    "latent_channels": 4,
}
# SD 2 fixes the head size instead of the head count, and projects in and
# out of its transformers with dense layers.
_SD_V2_UNET = dict(
    _SD_V1_UNET,
    context_dim=1024,
    num_heads=None,
    head_size=64,
    transformer_projection="linear",
)

# SDXL base 1.0's networks (diffusers' stabilityai/stable-diffusion-xl-base-1.0
# configs): CLIP ViT-L and OpenCLIP ViT-bigG, read at their penultimate
# layers; bigG's final-normed end-token state, projected, is the pooled text.
_SDXL_CLIP_L = {
    "vocabulary_size": 49408,
    "sequence_length": 77,
    "hidden_dim": 768,
    "num_layers": 12,
    "num_heads": 12,
    "intermediate_dim": 3072,
    "intermediate_activation": "quick_gelu",
    "layer_norm_epsilon": 1e-5,
    "hidden_states_layer": "penultimate",
    "return_pooled": True,
    "end_token_id": 49407,
}
_SDXL_CLIP_G = {
    "vocabulary_size": 49408,
    "sequence_length": 77,
    "hidden_dim": 1280,
    "num_layers": 32,
    "num_heads": 20,
    "intermediate_dim": 5120,
    "intermediate_activation": "gelu",
    "layer_norm_epsilon": 1e-5,
    "hidden_states_layer": "penultimate",
    "return_pooled": True,
    "projection_dim": 1280,
    "end_token_id": 49407,
}
# The diffusers-imported numerics (exact GELU, 1e-6 transformer GroupNorms).
_DIFFUSERS_UNET_NUMERICS = {
    "resnet_norm_epsilon": 1e-5,
    "transformer_norm_epsilon": 1e-6,
    "gelu_approximate": False,
}
_SDXL_UNET = {
    "block_channels": [320, 640, 1280],
    "layers_per_block": 2,
    "attention_levels": [False, True, True],
    "context_dim": 2048,
    "head_size": 64,
    "transformer_projection": "linear",
    "transformer_depth": [1, 2, 10],
    "norm_groups": 32,
    "latent_channels": 4,
    "pooled_text_dim": 1280,
    "time_ids_dim": 256,
    "num_time_ids": 6,
    **_DIFFUSERS_UNET_NUMERICS,
}
_SDXL_VAE = dict(_SD_VAE, norm_epsilon=1e-6)
# tiny-sdxl: the same code and wiring at a tiny size (64 px, widths 32-64).
_TINY_SDXL_CLIP = {
    "vocabulary_size": 600,
    "sequence_length": 77,
    "num_layers": 2,
    "num_heads": 2,
    "hidden_states_layer": "penultimate",
    "return_pooled": True,
    # The byte-level tokenizer's end token.
    "end_token_id": 513,
}

# tiny-shapes-xl: tiny-shapes re-expressed in the SDXL family. Its two encoders
# are tiny-shapes' (one layer more: SDXL reads the penultimate layer, so a
# last layer, started as the identity, only makes the pooled vector); the
# UNet is tiny-shapes' with SDXL's linear projections, a context of both
# encoders side by side and the added conditioning (pooled text + size ids).
_SHAPES_XL_CLIP = {
    "vocabulary_size": 640,
    "sequence_length": 16,
    "hidden_dim": 64,
    "num_layers": 3,
    "num_heads": 4,
    "intermediate_dim": 256,
    "intermediate_activation": "quick_gelu",
    "hidden_states_layer": "penultimate",
    "return_pooled": True,
    # The shapes-world tokenizer's end token (512 bytes, 92 merges, start).
    "end_token_id": 605,
}

BACKBONE_PRESETS = {
    "sd-v1": {
        "family": STABLE_DIFFUSION,
        "description": (
            "Stable Diffusion v1.4, 512 px, epsilon prediction; KerasCV's "
            "published weights (about 4 GB, downloaded once)."
        ),
        "text_encoder": {"class_name": "CLIPTextEncoder", "config": {
            "vocabulary_size": 49408,
            "sequence_length": 77,
            "hidden_dim": 768,
            "num_layers": 12,
            "num_heads": 12,
            "intermediate_dim": 3072,
            "intermediate_activation": "quick_gelu",
        }},
        "unet": {"class_name": "UNet", "config": _SD_V1_UNET},
        "vae_encoder": _SD_VAE_ENCODER,
        "vae_decoder": _SD_VAE_DECODER,
        "tokenizer": {"type": "clip", "sequence_length": 77},
        "prediction_type": "epsilon",
        "latent_scale": SD_LATENT_SCALE,
        "image_size": 512,
        "noise_schedule": SD_NOISE_SCHEDULE,
        "weights": {
            "text_encoder": _weights(
                "kcv_encoder.h5",
                _FCHOLLET,
                "4789e63e07c0e54d6a34a29b45ce81ece27060c499a709d556c7755b42bb0dc4",
            ),
            "unet": _weights(
                "kcv_diffusion_model.h5",
                _FCHOLLET,
                "8799ff9763de13d7f30a683d653018e114ed24a6a819667da4f5ee10f9e805fe",
            ),
            **_VAE_WEIGHTS,
        },
    },
    "sd-v2": {
        "family": STABLE_DIFFUSION,
        "description": (
            "Stable Diffusion v2.1-base, 512 px, epsilon prediction, OpenCLIP "
            "text encoder; KerasCV's published weights (about 5 GB, "
            "downloaded once)."
        ),
        "text_encoder": {"class_name": "CLIPTextEncoder", "config": {
            # OpenCLIP ViT-H/14 without its last layer (SD 2 reads the
            # penultimate layer); KerasCV uses the tanh approximation of GELU.
            "vocabulary_size": 49408,
            "sequence_length": 77,
            "hidden_dim": 1024,
            "num_layers": 23,
            "num_heads": 16,
            "intermediate_dim": 4096,
            "intermediate_activation": "gelu_approximate",
        }},
        "unet": {"class_name": "UNet", "config": _SD_V2_UNET},
        "vae_encoder": _SD_VAE_ENCODER,
        "vae_decoder": _SD_VAE_DECODER,
        "tokenizer": {"type": "clip", "sequence_length": 77},
        "prediction_type": "epsilon",
        "latent_scale": SD_LATENT_SCALE,
        "image_size": 512,
        "noise_schedule": SD_NOISE_SCHEDULE,
        "weights": {
            "text_encoder": _weights(
                "text_encoder_v2_1.h5",
                _IANSTENBIT,
                "985002e68704e1c5c3549de332218e99c5b9b745db7171d5f31fcd9a6089f25b",
            ),
            "unet": _weights(
                "diffusion_model_v2_1.h5",
                _IANSTENBIT,
                "c31730e91111f98fe0e2dbde4475d381b5287ebb9672b1821796146a25c5132d",
            ),
            **_VAE_WEIGHTS,
        },
    },
    "tiny": {
        "family": STABLE_DIFFUSION,
        "description": (
            "Random weights, same code at a tiny size (64 px images, width "
            "32): builds in seconds, for tests and trying the tools offline."
        ),
        "text_encoder": {"class_name": "CLIPTextEncoder", "config": {
            # Room for the byte-level tokenizer's 514 tokens.
            "vocabulary_size": 600,
            "sequence_length": 77,
            "hidden_dim": 32,
            "num_layers": 2,
            "num_heads": 2,
            "intermediate_dim": 128,
        }},
        "unet": {"class_name": "UNet", "config": {
            "block_channels": [32, 64],
            "layers_per_block": 1,
            "attention_levels": [True, False],
            "context_dim": 32,
            "num_heads": 2,
            "norm_groups": 8,
        }},
        "vae_encoder": {"class_name": "VAEEncoder", "config": _TINY_VAE},
        "vae_decoder": {"class_name": "VAEDecoder", "config": _TINY_VAE},
        "tokenizer": {"type": "byte_level", "sequence_length": 77},
        "prediction_type": "epsilon",
        "latent_scale": SD_LATENT_SCALE,
        "image_size": 64,
        "noise_schedule": SD_NOISE_SCHEDULE,
        "weights": None,
    },
    "tiny-shapes": {
        "family": STABLE_DIFFUSION,
        "description": (
            "The studio's embedded model: the same code at a tiny size (32 px "
            "images, 8x8 latents), pretrained by `studio train base` on the "
            "procedural shapes world (`studio.datasets.ShapesWorld`); its "
            "weights ship with the package, so it loads offline."
        ),
        "text_encoder": {"class_name": "CLIPTextEncoder", "config": {
            # The world's 606 tokens, with room to spare.
            "vocabulary_size": 640,
            "sequence_length": 16,
            "hidden_dim": 64,
            "num_layers": 2,
            "num_heads": 4,
            "intermediate_dim": 256,
        }},
        "unet": {"class_name": "UNet", "config": {
            "block_channels": [32, 64],
            "layers_per_block": 1,
            "attention_levels": [True, True],
            "context_dim": 64,
            "num_heads": 4,
            "norm_groups": 8,
        }},
        "vae_encoder": {"class_name": "VAEEncoder", "config": _SHAPES_VAE},
        "vae_decoder": {"class_name": "VAEDecoder", "config": _SHAPES_VAE},
        "tokenizer": {"type": "shapes_world", "sequence_length": 16},
        "prediction_type": "epsilon",
        # Measured on the trained VAE: 1 / std of its latents over the world.
        "latent_scale": 0.72589,
        "image_size": 32,
        "noise_schedule": SD_NOISE_SCHEDULE,
        "weights": None,
        # Files `studio.pretrained/<prefix>_<component>.weights.h5`, in the package.
        "packaged_weights": "tiny_shapes",
    },
    "tiny-shapes-xl": {
        "family": SDXL,
        "description": (
            "The embedded model in the SDXL family: tiny-shapes' networks re-expressed "
            "with two text encoders (penultimate states side by side, pooled "
            "projection), SDXL's UNet conditioning (pooled text + size ids) and "
            "tiny-shapes' VAE, adapted on the shapes world by `studio train base-xl`; "
            "its weights ship with the package, so it loads offline."
        ),
        "text_encoder": {"class_name": "CLIPTextEncoder", "config": _SHAPES_XL_CLIP},
        "text_encoder_2": {"class_name": "CLIPTextEncoder", "config": dict(
            _SHAPES_XL_CLIP, intermediate_activation="gelu", projection_dim=64,
        )},
        "unet": {"class_name": "UNet", "config": {
            "block_channels": [32, 64],
            "layers_per_block": 1,
            "attention_levels": [True, True],
            "context_dim": 128,
            "num_heads": 4,
            "transformer_projection": "linear",
            "transformer_depth": [1, 1],
            "norm_groups": 8,
            "pooled_text_dim": 64,
            "time_ids_dim": 8,
            "num_time_ids": 6,
            **_DIFFUSERS_UNET_NUMERICS,
        }},
        "vae_encoder": {"class_name": "VAEEncoder", "config": _SHAPES_VAE},
        "vae_decoder": {"class_name": "VAEDecoder", "config": _SHAPES_VAE},
        "tokenizer": {"type": "shapes_world", "sequence_length": 16},
        # The world's tokenizer pads with its end token, so both encoders
        # read the same ids (SDXLBackbone needs no second padding).
        "tokenizer_2": {"type": "shapes_world", "sequence_length": 16},
        "prediction_type": "epsilon",
        # tiny-shapes' VAE, frozen: its measured scale.
        "latent_scale": 0.72589,
        "image_size": 32,
        "noise_schedule": SD_NOISE_SCHEDULE,
        "weights": None,
        # The VAE is tiny-shapes' own files; the rest are this model's.
        "packaged_weights": {
            "text_encoder": "tiny_shapes_xl",
            "text_encoder_2": "tiny_shapes_xl",
            "unet": "tiny_shapes_xl",
            "vae_encoder": "tiny_shapes",
            "vae_decoder": "tiny_shapes",
        },
    },
    "tiny-sdxl": {
        "family": SDXL,
        "description": (
            "SDXL's networks and conditioning with random weights at a tiny size (64 px "
            "images, widths 32-64): builds in seconds, for tests and trying the SDXL "
            "tools offline."
        ),
        "text_encoder": {"class_name": "CLIPTextEncoder", "config": dict(
            _TINY_SDXL_CLIP, hidden_dim=32, intermediate_dim=128,
            intermediate_activation="quick_gelu",
        )},
        "text_encoder_2": {"class_name": "CLIPTextEncoder", "config": dict(
            _TINY_SDXL_CLIP, hidden_dim=64, intermediate_dim=128,
            intermediate_activation="gelu", projection_dim=32,
        )},
        "unet": {"class_name": "UNet", "config": {
            "block_channels": [32, 64],
            "layers_per_block": 1,
            "attention_levels": [False, True],
            "context_dim": 96,
            "num_heads": 2,
            "transformer_projection": "linear",
            "transformer_depth": [1, 2],
            "norm_groups": 8,
            "pooled_text_dim": 32,
            "time_ids_dim": 8,
            "num_time_ids": 6,
            **_DIFFUSERS_UNET_NUMERICS,
        }},
        "vae_encoder": {"class_name": "VAEEncoder", "config": _TINY_VAE},
        "vae_decoder": {"class_name": "VAEDecoder", "config": _TINY_VAE},
        "tokenizer": {"type": "byte_level", "sequence_length": 77},
        "tokenizer_2": {"type": "byte_level", "sequence_length": 77, "pad_token": "!"},
        "prediction_type": "epsilon",
        "latent_scale": SDXL_LATENT_SCALE,
        "image_size": 64,
        "noise_schedule": SD_NOISE_SCHEDULE,
        "weights": None,
    },
    "sdxl-base": {
        "family": SDXL,
        "description": (
            "SDXL base 1.0, 1024 px, epsilon prediction. The weights are not downloaded: "
            "give your sd_xl_base_1.0.safetensors (or its diffusers folder, or a "
            "fine-tune of it) as the model, or as this preset's weights."
        ),
        "text_encoder": {"class_name": "CLIPTextEncoder", "config": _SDXL_CLIP_L},
        "text_encoder_2": {"class_name": "CLIPTextEncoder", "config": _SDXL_CLIP_G},
        "unet": {"class_name": "UNet", "config": _SDXL_UNET},
        "vae_encoder": {"class_name": "VAEEncoder", "config": _SDXL_VAE},
        "vae_decoder": {"class_name": "VAEDecoder", "config": _SDXL_VAE},
        "tokenizer": {"type": "clip", "sequence_length": 77},
        "tokenizer_2": {"type": "clip", "sequence_length": 77, "pad_token": "!"},
        "prediction_type": "epsilon",
        "latent_scale": SDXL_LATENT_SCALE,
        "image_size": 1024,
        "noise_schedule": SD_NOISE_SCHEDULE,
        "weights": None,
        # `studio.interop.load_backbone("sdxl-base", weights=<file or folder>)`
        # imports them; `from_preset` alone builds the networks only.
        "imported_weights": True,
    },
}


# --- Stable Diffusion 3 / 3.5 (keras-hub's networks, `studio.models.sd3`) ---

# The family of keras-hub's `StableDiffusion3Backbone` presets and `tiny-sd3`.
SD3 = "sd3"

# keras-hub's preset names pass through to `keras_hub.models.
# StableDiffusion3Backbone.from_preset` (Kaggle handles: downloaded once, or
# found offline in a notebook with the model attached).
KERAS_HUB_SD3_PRESETS = (
    "stable_diffusion_3_medium",
    "stable_diffusion_3.5_medium",
    "stable_diffusion_3.5_large",
    "stable_diffusion_3.5_large_turbo",
)

# Rectified-flow training schedule of SD3 (diffusers' scheduler_config.json
# of stable-diffusion-3-medium: 1000 timesteps, shift 3.0).
SD3_FLOW_SCHEDULE = {"num_train_timesteps": 1000, "shift": 3.0}

# tiny-shapes-sd3: the shapes world in the SD3 family, keras-hub's classes at
# a small size. Its CLIP-L and CLIP-G are tiny-shapes' text encoder
# re-expressed (`re_express_clip_in_sd3`: one identity layer more, since SD3
# reads the penultimate states), frozen, so they hold the world's prompts
# (16 of its tokens, where tiny-sd3's byte-level 16 truncate them). The VAE
# (keras-hub's, 32 norm groups, so 32 channels at least) has three levels:
# 32 px -> 8x8x16 latents (SD3's 8x, 4x4 latents, blurred the shapes: 0.72
# shape accuracy on its reconstructions after 1500 steps); the MMDiT sees
# them one latent pixel a token (64 image tokens; SD3's 2x2 patches left each
# token 64 values to predict from a 64-wide state). Both are trained from
# scratch by `studio train base-sd3`.
_SHAPES_SD3_CLIP = {
    "vocabulary_size": 640,
    "embedding_dim": 64,
    "hidden_dim": 64,
    "num_layers": 3,
    "num_heads": 4,
    "intermediate_dim": 256,
    "intermediate_activation": "quick_gelu",
    "intermediate_output_index": -2,
    "max_sequence_length": 16,
}
_SHAPES_SD3_VAE_BLOCKS = [32, 32, 32]

SD3_PRESETS = {
    **{
        name: {
            "family": SD3,
            "description": f"keras-hub's {name} (Kaggle download, or an attached Kaggle model).",
            "keras_hub_preset": name,
            "tokenizer": {"type": "keras_hub"},
        }
        for name in KERAS_HUB_SD3_PRESETS
    },
    "tiny-sd3": {
        "family": SD3,
        "description": (
            "keras-hub's SD3 classes at a tiny size (64 px images, 8x8x16 "
            "latents, width 32), random seeded weights: builds in seconds, for tests."
        ),
        # Arguments of keras-hub's classes (CLIPTextEncoder twice, VAEBackbone,
        # StableDiffusion3Backbone's MMDiT arguments).
        "clip_l": {
            # Room for the byte-level tokenizer's 514 tokens.
            "vocabulary_size": 600,
            "embedding_dim": 32,
            "hidden_dim": 32,
            "num_layers": 2,
            "num_heads": 2,
            "intermediate_dim": 64,
            "intermediate_activation": "quick_gelu",
            # SD3 conditions on the penultimate layer's hidden states.
            "intermediate_output_index": -2,
            "max_sequence_length": 16,
        },
        "clip_g": {
            "vocabulary_size": 600,
            "embedding_dim": 48,
            "hidden_dim": 48,
            "num_layers": 2,
            "num_heads": 2,
            "intermediate_dim": 96,
            "intermediate_activation": "gelu",
            "intermediate_output_index": -2,
            "max_sequence_length": 16,
        },
        "vae": {
            # keras-hub VAE blocks use 32 norm groups: 32 channels at least.
            "encoder_num_filters": [32, 32, 32, 32],
            "encoder_num_blocks": [1, 1, 1, 1],
            "decoder_num_filters": [32, 32, 32, 32],
            "decoder_num_blocks": [1, 1, 1, 1],
            "sampler_method": "sample",
            "sample_channels": 32,
            "scale": 1.5305,
            "shift": 0.0609,
        },
        "mmdit": {
            "mmdit_patch_size": 2,
            "mmdit_hidden_dim": 32,
            "mmdit_num_layers": 2,
            "mmdit_num_heads": 2,
            "mmdit_position_size": 8,
            "mmdit_qk_norm": None,
            "mmdit_dual_attention_indices": None,
            "latent_channels": 16,
        },
        "tokenizer": {"type": "byte_level", "sequence_length": 16},
        "flow_schedule": SD3_FLOW_SCHEDULE,
        "image_size": 64,
    },
}

# tiny-shapes-sd3: `studio train base-sd3` builds and trains it from this spec
# (`SD3Backbone.from_spec`); `--ship` copies the weights into the package and
# the VAE's measured "scale" and "shift" go here.
TINY_SHAPES_SD3_SPEC = {
    "family": SD3,
    "description": (
        "The embedded model in the SD3 family: keras-hub's SD3 classes at a small size "
        "(32 px images, 8x8x16 latents, a 4-layer MMDiT), CLIP-L and CLIP-G re-expressed "
        "from tiny-shapes' text encoder, the VAE and MMDiT trained on the shapes world with "
        "flow matching by `studio train base-sd3`."
    ),
    "clip_l": _SHAPES_SD3_CLIP,
    "clip_g": dict(_SHAPES_SD3_CLIP, intermediate_activation="gelu"),
    "vae": {
        "encoder_num_filters": _SHAPES_SD3_VAE_BLOCKS,
        "encoder_num_blocks": [1, 1, 1],
        "decoder_num_filters": _SHAPES_SD3_VAE_BLOCKS,
        "decoder_num_blocks": [1, 1, 1],
        "sampler_method": "sample",
        "sample_channels": 32,
        # Measured on the trained VAE (`studio train base-sd3`): the latents'
        # mean and 1 / their std over the world.
        "scale": 0.6979618072509766,
        "shift": 0.09795398265123367,
    },
    "mmdit": {
        # One latent pixel a token (64 tokens): with 2x2 patches each of the
        # 16 tokens had to predict 64 values from a 64-wide state, and 12000
        # steps drew the held-out prompts' shape only 0.60 of the time.
        "mmdit_patch_size": 1,
        "mmdit_hidden_dim": 64,
        "mmdit_num_layers": 4,
        "mmdit_num_heads": 4,
        "mmdit_position_size": 8,
        "mmdit_qk_norm": None,
        "mmdit_dual_attention_indices": None,
        "latent_channels": 16,
    },
    "tokenizer": {"type": "shapes_world", "sequence_length": 16},
    # No resolution shift: SD3's 3.0 is for 1024 px; its 256 px pretraining used 1.
    "flow_schedule": {"num_train_timesteps": 1000, "shift": 1.0},
    "image_size": 32,
    # tiny-shapes' shipped text encoder, re-expressed when the preset loads;
    # files `studio.pretrained/tiny_shapes_sd3_{mmdit,vae}.weights.h5`.
    "packaged_weights": {
        "text_encoders": "tiny-shapes",
        "mmdit": "tiny_shapes_sd3",
        "vae": "tiny_shapes_sd3",
    },
}

SD3_PRESETS["tiny-shapes-sd3"] = TINY_SHAPES_SD3_SPEC
