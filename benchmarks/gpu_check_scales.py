"""The GPU check's two scales (full size on a GPU, tiny on the CPU) and its plain data.

Plain data and the step timer; no framework is imported here, so the orchestrator
(`gpu_check.py`) and both workers read the same numbers.
"""

import dataclasses
import statistics
import time

PRECISIONS = ("mixed_float16", "mixed_bfloat16")
TRAIN_TASKS = ("ti", "lora", "full_lean", "full")
TASK_NAMES = {
    "ti": "textual inversion",
    "lora": "DreamBooth LoRA r4",
    "full": "DreamBooth full AdamW",
    "full_lean": "DreamBooth full Adafactor+remat",
}
# Tasks that train no weight of the backbone: the workers build it in
# `backbone_policy(precision, frozen=True)` (half-precision weights under a
# mixed precision), as `studio train textual-inversion` and `studio train
# dreambooth --lora-rank` load it; full fine-tuning keeps Keras' mixed policy.
FROZEN_BACKBONE_TASKS = ("ti", "lora")
LORA_RANK = 4
PRIOR_LOSS_WEIGHT = 1.0
TI_LEARNING_RATE = 5e-3
LORA_LEARNING_RATE = 1e-4
FULL_LEARNING_RATE = 5e-6
ADAMW_WEIGHT_DECAY = 1e-2
PLACEHOLDER = "<gpu-check>"
INITIALIZER = "cat"
TI_PROMPT = "a photo of a " + PLACEHOLDER
GENERATION_PROMPT = "a photo of an astronaut riding a horse on the moon"
GENERATION_SEED = 1234
GUIDANCE_SCALE = 7.5
TRAIN_SEED = 0
LATENT_SCALE = 0.18215
# Model families with rows: SD 1.x (the rows above), SD-XL and SD3.5 medium
# (`FamilyScale`, training rows of the issues' memory and speed goals).
FAMILIES = ("sd", "sdxl", "sd3")
FAMILY_LABELS = {"sd": "SD 1.x", "sdxl": "SD-XL", "sd3": "SD3.5-M"}
# The training rows of each newer family, in run order.
FAMILY_TASKS = {"sdxl": ("ti", "lora"), "sd3": ("lora",)}

# Dense fp16/bf16 tensor-core peak of each GPU, FLOP/s (datasheets), matched
# as a lower-case substring of the device name, first match wins.
PEAK_FLOPS = (
    ("h200", 989e12),
    ("h100", 989e12),  # SXM; the PCIe card peaks at 756e12.
    ("a100", 312e12),
    ("l4", 121e12),
    ("a10", 125e12),
    ("v100", 125e12),  # fp16 only: no bfloat16 units.
    ("t4", 65e12),  # fp16 only.
    ("p100", 18.7e12),  # fp16 only, no tensor cores.
)


def peak_flops(device_name):
    """The dense half-precision peak of `device_name` in FLOP/s, or None if unknown."""
    name = str(device_name).lower()
    for key, rate in PEAK_FLOPS:
        if key in name:
            return rate
    return None


@dataclasses.dataclass(frozen=True)
class Scale:
    """Sizes and repetitions of one run of the check.

    Attributes:
        name: "full" (the GPU run) or "dry" (`--cpu-dry-run`).
        preset: the studio backbone preset whose architecture is built.
        resolution: image size in pixels.
        batch_sizes: training batch sizes (subject examples per step).
        generation_batch_sizes: images per generation call.
        precisions: the training rows' dtype policies.
        warmup_steps: untimed first training steps (the first compiles).
        timed_steps: timed training steps (the median is reported).
        generation_steps: DDIM steps of a generation.
        generation_repeats: timed generations after the first (median).
        numerics_precisions: generation precisions, each compared pixel by
            pixel with diffusers.
        diffusers: the diffusers / transformers configs of the same networks.
        families: the newer families' rows, `{"sdxl": FamilyScale, "sd3": ...}`.
    """

    name: str
    preset: str
    resolution: int
    batch_sizes: tuple
    generation_batch_sizes: tuple
    precisions: tuple
    warmup_steps: int
    timed_steps: int
    generation_steps: int
    generation_repeats: int
    numerics_precisions: tuple
    diffusers: dict
    families: dict


@dataclasses.dataclass(frozen=True)
class FamilyScale:
    """The training rows of one newer family (SD-XL, SD3) at one scale.

    Attributes:
        preset: the studio preset whose networks are built (SD-XL), or None
            where `studio` gives them (SD3: keras-hub's class arguments).
        resolution: image size in pixels.
        precision: the rows' dtype policy (the issues' goals are fp16).
        batch_size: subject examples per step (prior preservation adds as
            many class examples in the DreamBooth rows).
        warmup_steps: untimed first steps (the first compiles).
        timed_steps: timed steps (the median is reported).
        remat: gradient checkpointing in the DreamBooth LoRA rows.
        studio: SD3's keras-hub arguments in the layout of the studio's
            `tiny-sd3` preset (`clip_l`, `clip_g`, `vae`, `mmdit`,
            `tokenizer`, `flow_schedule`, `image_size`); None for SD-XL.
        diffusers: the diffusers / transformers configs of the same networks.
    """

    preset: object
    resolution: int
    precision: str
    batch_size: int
    warmup_steps: int
    timed_steps: int
    remat: bool
    studio: object
    diffusers: dict


# SD 1.x as its release configs say (runwayml/stable-diffusion-v1-5), the
# studio's `sd-v1` preset; tests/benchmarks/test_gpu_check.py checks them
# against the studio's own exporters.
SD1_DIFFUSERS = {
    "unet": {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "use_linear_projection": False,
    },
    "vae": {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 512,
    },
    "text_encoder": {
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "projection_dim": 768,
    },
    "scheduler": {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
    },
}

# The studio's `tiny` preset in diffusers' terms.
TINY_DIFFUSERS = {
    "unet": dict(
        SD1_DIFFUSERS["unet"],
        sample_size=8,
        down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
        block_out_channels=[32, 64],
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=8,
    ),
    "vae": dict(
        SD1_DIFFUSERS["vae"],
        block_out_channels=[32, 32, 32, 32],
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    ),
    "text_encoder": dict(
        SD1_DIFFUSERS["text_encoder"],
        vocab_size=600,
        hidden_size=32,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=32,
    ),
    "scheduler": SD1_DIFFUSERS["scheduler"],
}

# SD-XL base 1.0 as its release configs say (stabilityai/stable-diffusion-xl-
# base-1.0), the studio's `sdxl-base` preset; tests/benchmarks/test_gpu_check.py
# checks them against the studio's exporters, as SD1_DIFFUSERS.
SDXL_DIFFUSERS = {
    "unet": {
        "sample_size": 128,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * 2,
        "up_block_types": ["CrossAttnUpBlock2D"] * 2 + ["UpBlock2D"],
        "block_out_channels": [320, 640, 1280],
        "layers_per_block": 2,
        "cross_attention_dim": 2048,
        "attention_head_dim": [5, 10, 20],
        "transformer_layers_per_block": [1, 2, 10],
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
    },
    "text_encoder": SD1_DIFFUSERS["text_encoder"],
    "text_encoder_2": dict(
        SD1_DIFFUSERS["text_encoder"],
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=32,
        num_attention_heads=20,
        hidden_act="gelu",
        projection_dim=1280,
    ),
    "scheduler": SD1_DIFFUSERS["scheduler"],
    "latent_scale": 0.13025,
}

# The studio's `tiny-sdxl` preset in diffusers' terms.
TINY_SDXL_DIFFUSERS = {
    "unet": dict(
        SDXL_DIFFUSERS["unet"],
        sample_size=8,
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
        block_out_channels=[32, 64],
        layers_per_block=1,
        cross_attention_dim=96,
        attention_head_dim=2,
        transformer_layers_per_block=[1, 2],
        norm_num_groups=8,
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8,
    ),
    "text_encoder": TINY_DIFFUSERS["text_encoder"],
    "text_encoder_2": dict(
        TINY_DIFFUSERS["text_encoder"],
        hidden_size=64,
        intermediate_size=128,
        hidden_act="gelu",
        projection_dim=32,
    ),
    "scheduler": SD1_DIFFUSERS["scheduler"],
    "latent_scale": 0.13025,
}

# SD 3.5 medium in keras-hub's classes (the arguments keras-hub's conversion
# script gives `stable_diffusion_3.5_medium`: MMDiT-X with q/k RMS norms and
# dual attention in blocks 0-12), laid out as the studio's `tiny-sd3` preset.
# The byte-level tokenizer stands in for CLIP's vocabulary (not downloaded).
SD35_MEDIUM_STUDIO = {
    "clip_l": {
        "vocabulary_size": 49408,
        "embedding_dim": 768,
        "hidden_dim": 768,
        "num_layers": 12,
        "num_heads": 12,
        "intermediate_dim": 3072,
        "intermediate_activation": "quick_gelu",
        "intermediate_output_index": -2,
        "max_sequence_length": 77,
    },
    "clip_g": {
        "vocabulary_size": 49408,
        "embedding_dim": 1280,
        "hidden_dim": 1280,
        "num_layers": 32,
        "num_heads": 20,
        "intermediate_dim": 5120,
        "intermediate_activation": "gelu",
        "intermediate_output_index": -2,
        "max_sequence_length": 77,
    },
    "vae": {
        "encoder_num_filters": [128, 256, 512, 512],
        "encoder_num_blocks": [2, 2, 2, 2],
        "decoder_num_filters": [512, 512, 256, 128],
        "decoder_num_blocks": [3, 3, 3, 3],
        "sampler_method": "sample",
        "sample_channels": 32,
        "scale": 1.5305,
        "shift": 0.0609,
    },
    "mmdit": {
        "mmdit_patch_size": 2,
        "mmdit_hidden_dim": 1536,
        "mmdit_num_layers": 24,
        "mmdit_num_heads": 24,
        "mmdit_position_size": 384,
        "mmdit_qk_norm": "rms_norm",
        "mmdit_dual_attention_indices": list(range(13)),
        "latent_channels": 16,
    },
    "tokenizer": {"type": "byte_level", "sequence_length": 77},
    "flow_schedule": {"num_train_timesteps": 1000, "shift": 3.0},
    "image_size": 1024,
}

# The same networks in diffusers' terms (stabilityai/stable-diffusion-3.5-
# medium's transformer/config.json; no T5, so the context is CLIP-L/G padded
# to T5's 4096 wide, as both sides do).
SD35_MEDIUM_DIFFUSERS = {
    "transformer": {
        "sample_size": 128,
        "patch_size": 2,
        "in_channels": 16,
        "num_layers": 24,
        "attention_head_dim": 64,
        "num_attention_heads": 24,
        "joint_attention_dim": 4096,
        "caption_projection_dim": 1536,
        "pooled_projection_dim": 2048,
        "out_channels": 16,
        "pos_embed_max_size": 384,
        "dual_attention_layers": list(range(13)),
        "qk_norm": "rms_norm",
    },
    "scheduler": {"num_train_timesteps": 1000, "shift": 3.0},
    "latent_scale": 1.5305,
    "latent_shift": 0.0609,
}

# The studio's `tiny-sd3` preset (keras-hub classes at width 32) with SD3.5's
# MMDiT features (q/k RMS norms, dual attention in the first block), so that
# the dry run goes through the code SD3.5 medium runs on the GPU; and in
# diffusers' terms.
TINY_SD3_STUDIO = {
    "clip_l": {
        "vocabulary_size": 600,
        "embedding_dim": 32,
        "hidden_dim": 32,
        "num_layers": 2,
        "num_heads": 2,
        "intermediate_dim": 64,
        "intermediate_activation": "quick_gelu",
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
        "mmdit_qk_norm": "rms_norm",
        "mmdit_dual_attention_indices": [0],
        "latent_channels": 16,
    },
    "tokenizer": {"type": "byte_level", "sequence_length": 16},
    "flow_schedule": {"num_train_timesteps": 1000, "shift": 3.0},
    "image_size": 64,
}
TINY_SD3_DIFFUSERS = {
    "transformer": dict(
        SD35_MEDIUM_DIFFUSERS["transformer"],
        sample_size=8,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        caption_projection_dim=32,
        pooled_projection_dim=32 + 48,
        pos_embed_max_size=8,
        dual_attention_layers=[0],
    ),
    "scheduler": SD35_MEDIUM_DIFFUSERS["scheduler"],
    "latent_scale": 1.5305,
    "latent_shift": 0.0609,
}

FAMILY_SCALES = {
    "full": {
        # The issues' goals: 1024 px, batch 1, fp16.
        "sdxl": FamilyScale(
            preset="sdxl-base",
            resolution=1024,
            precision="mixed_float16",
            batch_size=1,
            warmup_steps=2,
            timed_steps=5,
            remat=True,
            studio=None,
            diffusers=SDXL_DIFFUSERS,
        ),
        "sd3": FamilyScale(
            preset=None,
            resolution=1024,
            precision="mixed_float16",
            batch_size=1,
            warmup_steps=2,
            timed_steps=5,
            remat=True,
            studio=SD35_MEDIUM_STUDIO,
            diffusers=SD35_MEDIUM_DIFFUSERS,
        ),
    },
    "dry": {
        # One compile per row and 1 + 1 steps: the CPU proves the code runs.
        "sdxl": FamilyScale(
            preset="tiny-sdxl",
            resolution=64,
            precision="mixed_bfloat16",
            batch_size=1,
            warmup_steps=1,
            timed_steps=1,
            remat=True,
            studio=None,
            diffusers=TINY_SDXL_DIFFUSERS,
        ),
        "sd3": FamilyScale(
            preset=None,
            resolution=64,
            precision="mixed_bfloat16",
            batch_size=1,
            warmup_steps=1,
            timed_steps=1,
            remat=True,
            studio=TINY_SD3_STUDIO,
            diffusers=TINY_SD3_DIFFUSERS,
        ),
    },
}

SCALES = {
    "full": Scale(
        name="full",
        preset="sd-v1",
        resolution=512,
        batch_sizes=(1, 4),
        generation_batch_sizes=(1, 4),
        precisions=PRECISIONS,
        warmup_steps=2,
        timed_steps=5,
        generation_steps=30,
        generation_repeats=2,
        numerics_precisions=("mixed_float16",),
        diffusers=SD1_DIFFUSERS,
        families=FAMILY_SCALES["full"],
    ),
    "dry": Scale(
        name="dry",
        preset="tiny",
        resolution=64,
        # Each batch size and precision compiles every step anew (tens of
        # seconds on a shared 2-core CPU): one of each, and batch 2 for
        # generation, where image i's noise comes from seed + i.
        batch_sizes=(1,),
        generation_batch_sizes=(2,),
        # XLA:CPU has no float16 matrix products (JAX: "precision
        # F16_F16_F32 is not supported by dot_general on CPU"), so the
        # dry run's half-precision rows are bfloat16 ones.
        precisions=("mixed_bfloat16",),
        warmup_steps=1,
        timed_steps=2,
        generation_steps=2,
        generation_repeats=1,
        numerics_precisions=("float32",),
        diffusers=TINY_DIFFUSERS,
        families=FAMILY_SCALES["dry"],
    ),
}


def time_steps(step, warmup, timed):
    """`{first_s, seconds_per_step, steps_per_second, loss}`: warm-up apart, median of the rest."""
    start = time.perf_counter()
    loss = step()
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        loss = step()
    durations = []
    for _ in range(timed):
        start = time.perf_counter()
        loss = step()
        durations.append(time.perf_counter() - start)
    seconds = statistics.median(durations)
    return {
        "first_s": first,
        "seconds_per_step": seconds,
        "steps_per_second": 1.0 / seconds,
        "loss": loss,
    }
