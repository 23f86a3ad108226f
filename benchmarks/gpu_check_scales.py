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
# Textual inversion builds its frozen networks in the half-precision
# policy, as `studio train textual-inversion` does (no float32 copy of
# weights nothing trains); DreamBooth keeps Keras' mixed policies.
FROZEN_NETWORK_POLICIES = {
    "mixed_float16": "float16",
    "mixed_bfloat16": "bfloat16",
    "float32": "float32",
}
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
# Families beyond SD 1.x get rows once the tree has them (see
# `gpu_check.family_hooks`): the folder that would hold each.
FUTURE_FAMILIES = {"sdxl": "studio/models/sdxl", "sd3": "studio/models/sd3"}

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
