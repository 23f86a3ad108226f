"""The GPU check's reference rows: diffusers' equivalent steps in PyTorch.

Each training row does the work of the studio row beside it, the way
diffusers' example scripts do it: `textual_inversion.py` (the whole token
table trains, rows other than the placeholder's are restored after each
step, the UNet in the half-precision `weight_dtype`), `train_dreambooth_lora.py`
(peft LoRA on `to_q`, `to_k`, `to_v`, `to_out.0`, float32 LoRA weights,
frozen half-precision UNet) and `train_dreambooth.py` (float32 UNet, AdamW,
autocast; the lean row with gradient checkpointing and transformers'
Adafactor). The inputs are the studio's: VAE moments sampled in the step
(the scripts encode images with the VAE every step, which the studio's
latent cache saves: against the scripts the studio's ratio would be
higher) and, for DreamBooth, precomputed text embeddings. Networks are
built from config dicts (`gpu_check_scales`), nothing is downloaded.
Importing this module imports no Keras, JAX or TensorFlow.
"""

import os
import resource
import statistics
import time

import numpy as np

from gpu_check_scales import (
    ADAMW_WEIGHT_DECAY,
    FULL_LEARNING_RATE,
    GUIDANCE_SCALE,
    LATENT_SCALE,
    LORA_LEARNING_RATE,
    LORA_RANK,
    PRIOR_LOSS_WEIGHT,
    TI_LEARNING_RATE,
    TRAIN_SEED,
    time_steps,
)

GIB = 1024**3
LORA_TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]
TORCH_DTYPES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16", "float32": "float32"}
# The placeholder's row is the one past the vocabulary (the script adds a
# token and resizes the table); its initializer is any ordinary row.
INITIALIZER_ROW = 100


def run_rows(rows, scale, work_dir, emit):
    """Runs `rows` in order; a failing row is reported as an error and the next runs."""
    import torch

    shared = {}
    for row in rows:
        try:
            result = _runner(row)(row, scale, work_dir, shared)
        except Exception as error:  # One row's failure (OOM, ...) is its result.
            result = {"error": f"{type(error).__name__}: {error}"[:400]}
        emit(row["id"], result)
        if row["kind"] == "train" and torch.cuda.is_available():
            torch.cuda.empty_cache()


def _device(scale):
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if scale.name == "full":
        raise RuntimeError("The full-size check needs a CUDA GPU. Received: torch sees none")
    # Tiny networks on a CPU shared with other processes: one thread each.
    torch.set_num_threads(1)
    return torch.device("cpu")


def device_name():
    import torch

    if torch.cuda.is_available():
        return f"gpu: {torch.cuda.get_device_name(0)}"
    return "cpu"


def memory_peak(device):
    import torch

    if device.type == "cuda":
        return {"peak_gib": torch.cuda.max_memory_allocated() / GIB, "memory_kind": "device peak"}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"peak_gib": peak / GIB, "memory_kind": "host RSS"}


def _reset_peak(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


# --- Training rows ---------------------------------------------------------


def train_row(row, scale, work_dir, shared):
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel

    device = _device(scale)
    torch.manual_seed(TRAIN_SEED)
    dtype = getattr(torch, TORCH_DTYPES[row["precision"]])
    task, batch_size = row["task"], row["batch"]
    start = time.perf_counter()
    with torch.device(device):  # Random initialisation on the device: seconds, not minutes.
        unet = UNet2DConditionModel(**scale.diffusers["unet"])
    schedule = DDPMScheduler(**scale.diffusers["scheduler"])
    if task == "ti":
        step_parts = _textual_inversion(unet, scale, batch_size, dtype, device)
    else:
        step_parts = _dreambooth(unet, scale, batch_size, dtype, device, task)
    forward, parameters, optimizer, after_step, moments = step_parts
    alphas = schedule.alphas_cumprod.to(device)

    def loss():
        # Under autocast, which changes only the networks' matrix products and
        # convolutions: the sampling below stays float32.
        mean, log_variance = moments.chunk(2, dim=1)
        latents = mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean)
        latents = latents * LATENT_SCALE
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, len(alphas), (latents.shape[0],), device=device)
        a = alphas[timesteps].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        return forward(noisy, timesteps, noise)

    return timed_training(loss, parameters, optimizer, after_step, moments, scale, dtype, device,
                          start)  # fmt: skip


def timed_training(loss, parameters, optimizer, after_step, moments, scale, dtype, device, start):
    """Times the training step of `loss()` as the scripts run it: the row's result.

    autocast to `dtype`, accelerate's GradScaler under float16 (fp16
    gradients underflow unscaled), `scale`'s warm-up and timed steps (a
    `Scale` or a family's `FamilyScale`); `start` is when building began.
    """
    import torch

    build_seconds = time.perf_counter() - start
    # What was built in float32 and cast down is gone by now: the peak is
    # what training holds (the studio builds in its dtype directly).
    _reset_peak(device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            value = loss()
        scaler.scale(value).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        after_step()
        return float(value)  # Waits for the device.

    result = time_steps(step, scale.warmup_steps, scale.timed_steps)
    result.update(
        build_s=build_seconds,
        trained_parameters=int(sum(p.numel() for p in parameters)),
        unet_batch=int(moments.shape[0]),
        **memory_peak(device),
    )
    return result


def _moments(scale, count, device):
    """Random VAE moments, NCHW, as the studio rows feed them (NHWC there)."""
    import torch

    size = scale.resolution // 8
    rng = np.random.default_rng(TRAIN_SEED + 1)
    moments = rng.standard_normal((count, 8, size, size)).astype("float32")
    moments[:, 4:] = -2.0
    return torch.from_numpy(moments).to(device)


def _textual_inversion(unet, scale, batch_size, dtype, device):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    config = scale.diffusers["text_encoder"]
    with torch.device(device):
        text_encoder = CLIPTextModel(CLIPTextConfig(**config))
    # One new token: the table grows by a row, started from the initializer's.
    text_encoder.resize_token_embeddings(config["vocab_size"] + 1)
    table = text_encoder.get_input_embeddings().weight
    placeholder = config["vocab_size"]
    with torch.no_grad():
        table[placeholder] = table[INITIALIZER_ROW]
    unet.to(dtype).requires_grad_(False)
    # Only the token table trains (the script freezes the rest module by
    # module; transformers 5 moved those modules).
    text_encoder.requires_grad_(False)
    table.requires_grad_(True)
    parameters = [table]
    optimizer = torch.optim.AdamW(parameters, lr=TI_LEARNING_RATE, weight_decay=ADAMW_WEIGHT_DECAY)
    original = table.detach().clone()
    keep = torch.ones(table.shape[0], dtype=torch.bool, device=device)
    keep[placeholder] = False
    rng = np.random.default_rng(TRAIN_SEED)
    token_ids = rng.integers(0, config["vocab_size"], (batch_size, config["max_position_embeddings"]))
    token_ids[:, 5] = placeholder
    token_ids = torch.from_numpy(token_ids).to(device)

    def forward(noisy, timesteps, noise):
        context = text_encoder(token_ids)[0].to(dtype)
        prediction = unet(noisy.to(dtype), timesteps, context).sample
        return torch.nn.functional.mse_loss(prediction.float(), noise.float())

    def after_step():
        # The script's way to train one row of the whole table.
        with torch.no_grad():
            table[keep] = original[keep]

    return forward, [table[placeholder]], optimizer, after_step, _moments(scale, batch_size, device)


def _dreambooth(unet, scale, batch_size, dtype, device, task):
    import torch

    examples = 2 * batch_size
    if task == "lora":
        from peft import LoraConfig

        unet.to(dtype).requires_grad_(False)
        unet.add_adapter(
            LoraConfig(
                r=LORA_RANK,
                lora_alpha=LORA_RANK,
                init_lora_weights="gaussian",
                target_modules=LORA_TARGET_MODULES,
            )
        )
        parameters = [p for p in unet.parameters() if p.requires_grad]
        for parameter in parameters:  # The script's `cast_training_params`.
            parameter.data = parameter.data.float()
        optimizer = torch.optim.AdamW(
            parameters, lr=LORA_LEARNING_RATE, weight_decay=ADAMW_WEIGHT_DECAY
        )
    else:
        parameters = list(unet.parameters())
        if task == "full_lean":
            from transformers.optimization import Adafactor

            unet.enable_gradient_checkpointing()
            optimizer = Adafactor(
                parameters, lr=FULL_LEARNING_RATE, scale_parameter=False, relative_step=False
            )
        else:
            optimizer = torch.optim.AdamW(
                parameters, lr=FULL_LEARNING_RATE, weight_decay=ADAMW_WEIGHT_DECAY
            )
    unet.train()
    text = scale.diffusers["text_encoder"]
    generator = torch.Generator(device="cpu").manual_seed(TRAIN_SEED)
    context = torch.randn(
        (examples, text["max_position_embeddings"], text["hidden_size"]), generator=generator
    ).to(device)
    weight_dtype = next(unet.parameters()).dtype

    def forward(noisy, timesteps, noise):
        prediction = unet(
            noisy.to(weight_dtype), timesteps, context.to(weight_dtype)
        ).sample.float()
        instance, prior = prediction.chunk(2), noise.float().chunk(2)
        loss = torch.nn.functional.mse_loss(instance[0], prior[0])
        return loss + PRIOR_LOSS_WEIGHT * torch.nn.functional.mse_loss(instance[1], prior[1])

    return forward, parameters, optimizer, lambda: None, _moments(scale, examples, device)


# --- Generation and numerics rows ------------------------------------------


def _pipeline(precision, scale, work_dir, shared):
    """`StableDiffusionPipeline` loaded from the studio's export (once per worker)."""
    if precision in shared:
        return shared[precision]
    import torch
    from diffusers import StableDiffusionPipeline

    device = _device(scale)
    folder = os.path.join(work_dir, f"diffusers-{precision}")
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"The studio's export is missing (its row failed or did not run): {folder}"
        )
    start = time.perf_counter()
    pipeline = StableDiffusionPipeline.from_pretrained(
        folder,
        torch_dtype=getattr(torch, TORCH_DTYPES[precision]),
        safety_checker=None,
        requires_safety_checker=False,
    ).to(device)
    pipeline.set_progress_bar_config(disable=True)
    shared[precision] = {"pipeline": pipeline, "load_s": time.perf_counter() - start, "diffs": []}
    return shared[precision]


def generate_row(row, scale, work_dir, shared):
    """Latency as the studio row measures it, and the pixel difference of the same images."""
    import torch

    precision, batch = row["precision"], row["batch"]
    setup = _pipeline(precision, scale, work_dir, shared)
    pipeline = setup["pipeline"]
    device = pipeline.device
    _reset_peak(device)
    dtype = pipeline.unet.dtype
    studio = np.load(os.path.join(work_dir, f"studio-{precision}-b{batch}.npz"))
    # The studio draws image i's noise from NumPy's default_rng(seed + i);
    # its first draw is the initial latents (DDIM's init sigma is 1).
    size = scale.resolution // 8
    latents = np.stack(
        [
            np.random.default_rng(int(studio["seed"]) + index).standard_normal(
                (size, size, 4), dtype=np.float32
            )
            for index in range(batch)
        ]
    ).transpose(0, 3, 1, 2)
    latents = torch.from_numpy(np.ascontiguousarray(latents)).to(device, dtype)
    token_ids = torch.from_numpy(studio["token_ids"].astype("int64")).to(device)
    negative_ids = torch.from_numpy(studio["negative_token_ids"].astype("int64")).to(device)

    def generate():
        with torch.no_grad():
            context = pipeline.text_encoder(token_ids)[0]
            unconditional = pipeline.text_encoder(negative_ids)[0]
            images = pipeline(
                prompt_embeds=context,
                negative_prompt_embeds=unconditional,
                latents=latents,
                num_inference_steps=scale.generation_steps,
                guidance_scale=GUIDANCE_SCALE,
                height=scale.resolution,
                width=scale.resolution,
                eta=0.0,
                output_type="np",
            ).images
        return images

    start = time.perf_counter()
    images = generate()
    first = time.perf_counter() - start
    durations = []
    for _ in range(scale.generation_repeats):
        start = time.perf_counter()
        images = generate()
        durations.append(time.perf_counter() - start)
    # As the studio turns [-1, 1] into pixels: round(127.5 * (x + 1)).
    pixels = np.clip(np.round(np.nan_to_num(images.astype("float64")) * 255.0), 0, 255)
    difference = np.abs(pixels - studio["images"].astype("float64"))
    setup["diffs"].append(difference)
    return {
        "first_s": first,
        "latency_s": statistics.median(durations),
        "load_s": setup["load_s"],
        "max_abs_diff": float(difference.max()),
        "mean_abs_diff": float(difference.mean()),
        "non_finite_pixels": int(np.size(images) - np.isfinite(images).sum()),
        **memory_peak(device),
    }


def numerics_row(row, scale, work_dir, shared):
    """The pixel differences of every generation row of the precision, together."""
    setup = _pipeline(row["precision"], scale, work_dir, shared)
    if not setup["diffs"]:
        raise RuntimeError("No generation row of this precision produced images to compare")
    flat = np.concatenate([d.ravel() for d in setup["diffs"]])
    return {
        "max_abs_diff": float(flat.max()),
        "mean_abs_diff": float(flat.mean()),
        "share_over_2": float(np.mean(flat > 2)),
        "images": int(sum(d.shape[0] for d in setup["diffs"])),
    }


RUNNERS = {"train": train_row, "generate": generate_row, "numerics": numerics_row}


def _runner(row):
    """The function of a row: SD 1.x's here, a newer family's in `gpu_check_diffusers_families`."""
    if row.get("family", "sd") != "sd":
        import gpu_check_diffusers_families

        return gpu_check_diffusers_families.RUNNERS[row["family"], row["kind"]]
    return RUNNERS[row["kind"]]
