"""The GPU check's SD-XL and SD3 reference rows: diffusers' training steps in PyTorch.

Each row does per step what the diffusers example script beside the
studio row does, on networks built from config dicts (`gpu_check_scales`),
nothing downloaded, with the studio row's inputs (VAE moments sampled in
the step; cached text-encoder outputs for DreamBooth):

* `textual_inversion_sdxl.py`: one new token in both CLIP tables (each
  table trains whole, rows other than the placeholder's are restored after
  each step), text encoders in float32 under autocast, the UNet frozen in
  the half-precision `weight_dtype`, size ids of an uncropped square;
* `train_dreambooth_lora_sdxl.py`: peft LoRA (rank 4, `to_q`, `to_k`,
  `to_v`, `to_out.0`) on the frozen half-precision UNet, float32 LoRA
  weights, gradient checkpointing, cached prompt embeddings, prior
  preservation;
* `train_dreambooth_lora_sd3.py`: `SD3Transformer2DModel` frozen in half
  precision with peft LoRA on its attention (the script's default
  `attn.to_q/k/v`, `attn.to_out.0`, `attn.add_q/k/v_proj`,
  `attn.to_add_out`), gradient checkpointing, logit-normal timesteps on the
  shifted flow-matching schedule, the script's preconditioned x0 loss.

Importing this module imports no Keras, JAX or TensorFlow.
"""

import time

import numpy as np

from gpu_check_diffusers import (
    INITIALIZER_ROW,
    TORCH_DTYPES,
    _device,
    timed_training,
)
from gpu_check_scales import (
    ADAMW_WEIGHT_DECAY,
    LORA_LEARNING_RATE,
    LORA_RANK,
    PRIOR_LOSS_WEIGHT,
    TI_LEARNING_RATE,
    TRAIN_SEED,
)

SDXL_LORA_TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]
# train_dreambooth_lora_sd3.py's default `--lora_layers`: both streams'
# attention, not the dual-attention blocks' `attn2`.
SD3_LORA_TARGET_MODULES = [
    "attn.add_k_proj",
    "attn.add_q_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
    "attn.to_k",
    "attn.to_out.0",
    "attn.to_q",
    "attn.to_v",
]
# The script's defaults for timestep sampling.
SD3_WEIGHTING_SCHEME = "logit_normal"
SD3_LOGIT_MEAN, SD3_LOGIT_STD, SD3_MODE_SCALE = 0.0, 1.0, 1.29


def sdxl_train_row(row, scale, work_dir, shared):
    """`textual_inversion_sdxl.py`'s or `train_dreambooth_lora_sdxl.py`'s step."""
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel

    family = scale.families["sdxl"]
    device = _device(scale)
    torch.manual_seed(TRAIN_SEED)
    dtype = getattr(torch, TORCH_DTYPES[row["precision"]])
    start = time.perf_counter()
    with torch.device(device):  # Random initialisation on the device: seconds.
        unet = UNet2DConditionModel(**family.diffusers["unet"])
    if row["task"] == "ti":
        parts = _sdxl_textual_inversion(unet, family, row["batch"], dtype, device)
    else:
        parts = _sdxl_dreambooth_lora(unet, family, row["batch"], dtype, device)
    forward, parameters, optimizer, after_step, moments = parts
    alphas = DDPMScheduler(**family.diffusers["scheduler"]).alphas_cumprod.to(device)
    latent_scale = family.diffusers["latent_scale"]

    def loss():
        latents = _sample(moments) * latent_scale
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, len(alphas), (latents.shape[0],), device=device)
        a = alphas[timesteps].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        return forward(noisy, timesteps, noise)

    return timed_training(loss, parameters, optimizer, after_step, moments, family, dtype, device,
                          start)  # fmt: skip


def sd3_train_row(row, scale, work_dir, shared):
    """`train_dreambooth_lora_sd3.py`'s step on SD3.5 medium's transformer."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from diffusers.training_utils import (
        compute_density_for_timestep_sampling,
        compute_loss_weighting_for_sd3,
    )

    family = scale.families["sd3"]
    device = _device(scale)
    torch.manual_seed(TRAIN_SEED)
    dtype = getattr(torch, TORCH_DTYPES[row["precision"]])
    start = time.perf_counter()
    config = family.diffusers["transformer"]
    with torch.device(device):
        transformer = SD3Transformer2DModel(**config)
    parameters, optimizer = _lora_training(transformer, SD3_LORA_TARGET_MODULES, family, dtype)
    batch_size = row["batch"]
    examples = 2 * batch_size
    # Cached prompt embeddings of the studio row's shapes: CLIP-L/G's
    # context padded to T5's width, then T5's place as zeros.
    length = 2 * family.studio["clip_l"]["max_sequence_length"]
    generator = torch.Generator(device="cpu").manual_seed(TRAIN_SEED)
    context = torch.randn(
        (examples, length, config["joint_attention_dim"]), generator=generator
    )
    context[:, length // 2 :] = 0.0
    context = context.to(device, dtype)
    pooled = torch.randn(
        (examples, config["pooled_projection_dim"]), generator=generator
    ).to(device, dtype)
    moments = _moments(family, examples, config["in_channels"], device)
    schedule = FlowMatchEulerDiscreteScheduler(**family.diffusers["scheduler"])
    sigmas = schedule.sigmas.to(device)
    timesteps_table = schedule.timesteps.to(device)
    num_train_timesteps = family.diffusers["scheduler"]["num_train_timesteps"]
    latent_scale = family.diffusers["latent_scale"]
    latent_shift = family.diffusers["latent_shift"]

    def loss():
        model_input = (_sample(moments) - latent_shift) * latent_scale
        noise = torch.randn_like(model_input)
        u = compute_density_for_timestep_sampling(
            weighting_scheme=SD3_WEIGHTING_SCHEME,
            batch_size=examples,
            logit_mean=SD3_LOGIT_MEAN,
            logit_std=SD3_LOGIT_STD,
            mode_scale=SD3_MODE_SCALE,
        )
        indices = (u * num_train_timesteps).long().to(device)
        timesteps = timesteps_table[indices]
        sigma = sigmas[indices].view(-1, 1, 1, 1)
        noisy = (1.0 - sigma) * model_input + sigma * noise
        prediction = transformer(
            hidden_states=noisy.to(dtype),
            timestep=timesteps,
            encoder_hidden_states=context,
            pooled_projections=pooled,
            return_dict=False,
        )[0]
        # The script's default `--precondition_outputs`: the x0 estimate.
        prediction = prediction.float() * (-sigma) + noisy
        weighting = compute_loss_weighting_for_sd3(
            weighting_scheme=SD3_WEIGHTING_SCHEME, sigmas=sigma
        )
        terms = (weighting.float() * (prediction - model_input) ** 2).reshape(examples, -1)
        per_example = terms.mean(dim=1)
        instance, prior = per_example.chunk(2)
        return instance.mean() + PRIOR_LOSS_WEIGHT * prior.mean()

    result = timed_training(loss, parameters, optimizer, lambda: None, moments, family, dtype,
                            device, start)  # fmt: skip
    result["trained_note"] = "peft splits the fused qkv: rank 4 on each of q, k, v"
    return result


def _sample(moments):
    import torch

    mean, log_variance = moments.chunk(2, dim=1)
    return mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean)


def _moments(family, count, latent_channels, device):
    """Random VAE moments, NCHW, as the studio rows feed them (NHWC there)."""
    import torch

    size = family.resolution // 8
    rng = np.random.default_rng(TRAIN_SEED + 1)
    moments = rng.standard_normal((count, 2 * latent_channels, size, size)).astype("float32")
    moments[:, latent_channels:] = -2.0
    return torch.from_numpy(moments).to(device)


def _lora_training(model, target_modules, family, dtype):
    """`(parameters, optimizer)`: `model` frozen in `dtype` with float32 peft LoRA on `target_modules`.

    As the LoRA scripts set it up: rank = alpha, gaussian init, gradient
    checkpointing when the row asks for it, AdamW.
    """
    import torch
    from peft import LoraConfig

    model.to(dtype).requires_grad_(False)
    model.add_adapter(
        LoraConfig(
            r=LORA_RANK,
            lora_alpha=LORA_RANK,
            init_lora_weights="gaussian",
            target_modules=target_modules,
        )
    )
    parameters = _float32_trainable(model)
    if family.remat:
        model.enable_gradient_checkpointing()
    model.train()
    optimizer = torch.optim.AdamW(
        parameters, lr=LORA_LEARNING_RATE, weight_decay=ADAMW_WEIGHT_DECAY
    )
    return parameters, optimizer


def _float32_trainable(model):
    """The trainable (LoRA) parameters, kept in float32 (the scripts' `cast_training_params`)."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    for parameter in parameters:
        parameter.data = parameter.data.float()
    return parameters


# --- SD-XL -------------------------------------------------------------------


def _size_ids(family, count, device):
    """SDXL's six size ids of an uncropped square of the row's resolution."""
    import torch

    r = family.resolution
    return torch.tensor([[r, r, 0, 0, r, r]] * count, dtype=torch.float32, device=device)


def _sdxl_textual_inversion(unet, family, batch_size, dtype, device):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    encoders = []
    for name, model_class in (("text_encoder", CLIPTextModel),
                              ("text_encoder_2", CLIPTextModelWithProjection)):  # fmt: skip
        config = family.diffusers[name]
        with torch.device(device):
            encoder = model_class(CLIPTextConfig(**config))
        # One new token in each table, started from the initializer's row.
        encoder.resize_token_embeddings(config["vocab_size"] + 1)
        encoder.requires_grad_(False)
        encoders.append(encoder)
    vocabulary = family.diffusers["text_encoder"]["vocab_size"]
    placeholder = vocabulary
    tables = [encoder.get_input_embeddings().weight for encoder in encoders]
    originals, keep = [], []
    for table in tables:
        with torch.no_grad():
            table[placeholder] = table[INITIALIZER_ROW]
        table.requires_grad_(True)
        originals.append(table.detach().clone())
        mask = torch.ones(table.shape[0], dtype=torch.bool, device=device)
        mask[placeholder] = False
        keep.append(mask)
    unet.to(dtype).requires_grad_(False)
    optimizer = torch.optim.AdamW(tables, lr=TI_LEARNING_RATE, weight_decay=ADAMW_WEIGHT_DECAY)
    length = family.diffusers["text_encoder"]["max_position_embeddings"]
    rng = np.random.default_rng(TRAIN_SEED)
    token_ids = rng.integers(0, vocabulary, (batch_size, length))
    token_ids[:, 5] = placeholder
    token_ids = torch.from_numpy(token_ids).to(device)
    time_ids = _size_ids(family, batch_size, device)

    def forward(noisy, timesteps, noise):
        hidden_1 = encoders[0](token_ids, output_hidden_states=True).hidden_states[-2]
        output_2 = encoders[1](token_ids, output_hidden_states=True)
        context = torch.cat([hidden_1, output_2.hidden_states[-2]], dim=-1).to(dtype)
        conditioning = {"text_embeds": output_2.text_embeds.to(dtype), "time_ids": time_ids}
        prediction = unet(
            noisy.to(dtype), timesteps, context, added_cond_kwargs=conditioning
        ).sample
        return torch.nn.functional.mse_loss(prediction.float(), noise.float())

    def after_step():
        # The script's way to train one row of each whole table.
        with torch.no_grad():
            for table, original, mask in zip(tables, originals, keep):
                table[mask] = original[mask]

    trained = [table[placeholder] for table in tables]
    return forward, trained, optimizer, after_step, _moments(family, batch_size, 4, device)


def _sdxl_dreambooth_lora(unet, family, batch_size, dtype, device):
    import torch

    parameters, optimizer = _lora_training(unet, SDXL_LORA_TARGET_MODULES, family, dtype)
    examples = 2 * batch_size
    config = family.diffusers["unet"]
    length = family.diffusers["text_encoder"]["max_position_embeddings"]
    pooled_width = family.diffusers["text_encoder_2"]["projection_dim"]
    generator = torch.Generator(device="cpu").manual_seed(TRAIN_SEED)
    context = torch.randn((examples, length, config["cross_attention_dim"]), generator=generator)
    context = context.to(device, dtype)
    conditioning = {
        "text_embeds": torch.randn((examples, pooled_width), generator=generator).to(device, dtype),
        "time_ids": _size_ids(family, examples, device).to(dtype),
    }

    def forward(noisy, timesteps, noise):
        prediction = unet(
            noisy.to(dtype), timesteps, context, added_cond_kwargs=conditioning
        ).sample.float()
        instance, prior = prediction.chunk(2), noise.float().chunk(2)
        loss = torch.nn.functional.mse_loss(instance[0], prior[0])
        return loss + PRIOR_LOSS_WEIGHT * torch.nn.functional.mse_loss(instance[1], prior[1])

    return forward, parameters, optimizer, lambda: None, _moments(family, examples, 4, device)


RUNNERS = {("sdxl", "train"): sdxl_train_row, ("sd3", "train"): sd3_train_row}
