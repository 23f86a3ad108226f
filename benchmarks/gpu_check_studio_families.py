"""The GPU check's SD-XL and SD3 training rows on the studio's side (Keras 3, JAX).

Run only inside a studio worker of `gpu_check.py` (`gpu_check_studio`
sends these rows here). As there, nothing imports TensorFlow, keras_cv or
`studio.datasets`; batches are NumPy arrays as the latent cache and the
cached text-encoder outputs feed them, and the trainers are the ones
`studio train` builds, used through `compile` and `train_on_batch`:

* SD-XL textual inversion: `SDXLTextualInversionTrainer`, one placeholder
  trained in both text encoders, frozen networks stored in half precision
  (as `studio train textual-inversion` loads them);
* SD-XL DreamBooth LoRA: `DreamBoothTrainer` with LoRA rank 4 on the UNet,
  cached `context` / `text_embeds`, gradient checkpointing of the UNet's
  blocks (`remat`), prior preservation, frozen networks stored in half
  precision and float32 LoRA matrices (as `studio train dreambooth
  --lora-rank` loads them);
* SD3 DreamBooth LoRA: `SD3LoRATrainer` on keras-hub's MMDiT, cached
  `context` / `pooled_projection`, prior preservation, flow matching,
  gradient checkpointing of the joint blocks where the trainer has it,
  frozen networks in half precision as for SD-XL.

Every row builds its backbone in the trainers' own policy
(`gpu_check_studio.training_policy`: `backbone_policy`).
"""

import inspect
import time

import numpy as np

from gpu_check_scales import (
    ADAMW_WEIGHT_DECAY,
    INITIALIZER,
    LORA_LEARNING_RATE,
    LORA_RANK,
    PLACEHOLDER,
    PRIOR_LOSS_WEIGHT,
    TI_LEARNING_RATE,
    TI_PROMPT,
    TRAIN_SEED,
    time_steps,
)
from gpu_check_studio import GIB, memory_peak, training_policy


def sdxl_train_row(row, scale, work_dir, shared):
    """Textual inversion or DreamBooth LoRA on the `sdxl-base` architecture."""
    family = scale.families["sdxl"]
    task = row["task"]
    start = time.perf_counter()
    backbone = build_sdxl_backbone(family.preset, training_policy(row))
    build_seconds = time.perf_counter() - start
    if task == "ti":
        trainer, batch = _sdxl_textual_inversion(backbone, family, row["batch"])
        remat = None
    else:
        trainer, batch = _sdxl_dreambooth_lora(backbone, family, row["batch"])
        remat = "UNet blocks" if family.remat else "off"
    weights = _weights_gib(backbone.components.values())
    return _timed(trainer, batch, family, build_seconds, weights, remat)


def sd3_train_row(row, scale, work_dir, shared):
    """DreamBooth LoRA on keras-hub's MMDiT (SD3.5 medium's architecture)."""
    family = scale.families["sd3"]
    start = time.perf_counter()
    backbone = build_sd3_backbone(family.studio, training_policy(row))
    build_seconds = time.perf_counter() - start
    trainer, batch, remat = _sd3_dreambooth_lora(backbone, family, row["batch"])
    weights = _weights_gib([backbone.hub_backbone])
    return _timed(trainer, batch, family, build_seconds, weights, remat)


def _timed(trainer, batch, family, build_seconds, weights_gib, remat):
    trained = int(sum(np.prod(v.shape) for v in trainer.trainable_variables))

    def step():
        logs = trainer.train_on_batch(x=batch, return_dict=True)
        return float(logs["step_loss"])  # Waits for the device.

    result = time_steps(step, family.warmup_steps, family.timed_steps)
    result.update(
        build_s=build_seconds,
        trained_parameters=trained,
        unet_batch=int(batch["moments"].shape[0]),
        weights_gib=weights_gib,
        **memory_peak(),
    )
    if remat is not None:
        result["remat"] = remat
    return result


def _weights_gib(networks):
    """GiB of the networks' variables as stored (half precision for frozen ones, LoRA float32)."""
    total = 0
    for network in networks:
        for variable in network.weights:
            total += int(np.prod(variable.shape)) * np.dtype(variable.dtype).itemsize
    return total / GIB


# --- SD-XL -------------------------------------------------------------------


def build_sdxl_backbone(preset, policy):
    """The preset's SD-XL networks with random weights under `policy`, byte-level tokenizers.

    `from_preset` would need CLIP's vocabulary (not downloaded); prompts of
    the right length are all a benchmark needs. The encoders pool at the
    byte-level tokenizer's end token.
    """
    from studio.models import BACKBONE_PRESETS, network_classes
    from studio.models.sdxl.sdxl_backbone import SDXLBackbone
    from studio.tokenizers import CLIPTokenizer

    spec = BACKBONE_PRESETS[preset]
    tokenizer = CLIPTokenizer.byte_level()
    classes = network_classes()
    networks = {}
    for name in SDXLBackbone.component_names:
        config = dict(spec[name]["config"])
        if "end_token_id" in config:
            config["end_token_id"] = tokenizer.end_token_id
        networks[name] = classes[spec[name]["class_name"]](name=name, dtype=policy, **config)
    return SDXLBackbone(
        tokenizer=tokenizer,
        tokenizer_2=CLIPTokenizer.byte_level(pad_token="!"),
        prediction_type=spec["prediction_type"],
        latent_scale=spec["latent_scale"],
        image_size=spec["image_size"],
        noise_schedule=spec["noise_schedule"],
        name=preset,
        **networks,
    )


def _sdxl_textual_inversion(backbone, family, batch_size):
    import keras

    from studio.trainers.textual_inversion.sdxl_textual_inversion_trainer import (
        SDXLTextualInversionTrainer,
    )

    trainer = SDXLTextualInversionTrainer(backbone, PLACEHOLDER, INITIALIZER, seed=TRAIN_SEED)
    trainer.compile(optimizer=keras.optimizers.Adam(TI_LEARNING_RATE), jit_compile=True)
    batch = {
        # After the trainer added the placeholder to the tokenizer.
        "token_ids": backbone.tokenizer([TI_PROMPT] * batch_size),
        "moments": _moments(family, batch_size, backbone.unet.latent_channels),
    }
    return trainer, batch


def _sdxl_dreambooth_lora(backbone, family, batch_size):
    import keras

    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer

    trainer = DreamBoothTrainer(
        backbone,
        prior_loss_weight=PRIOR_LOSS_WEIGHT,
        lora_rank=LORA_RANK,
        remat=family.remat,
        seed=TRAIN_SEED,
    )
    trainer.compile(
        optimizer=keras.optimizers.AdamW(LORA_LEARNING_RATE, weight_decay=ADAMW_WEIGHT_DECAY), jit_compile=True
    )
    # Prior preservation: subject and class examples go through the UNet
    # together, with both encoders' outputs cached (`context`: CLIP-L and
    # bigG side by side; `text_embeds`: bigG's pooled projection); the
    # trainer adds each step's size ids.
    examples = 2 * batch_size
    rng = np.random.default_rng(TRAIN_SEED)
    length = backbone.text_encoder.sequence_length
    pooled = backbone.text_encoder_2.projection_dim or backbone.text_encoder_2.hidden_dim
    batch = {
        "moments": _moments(family, examples, backbone.unet.latent_channels),
        "context": rng.standard_normal(
            (examples, length, backbone.unet.context_dim)
        ).astype("float32"),
        "text_embeds": rng.standard_normal((examples, pooled)).astype("float32"),
        "is_class_image": np.array([False] * batch_size + [True] * batch_size),
    }
    return trainer, batch


# --- SD3 -----------------------------------------------------------------------


def build_sd3_backbone(spec, policy):
    """keras-hub's SD3 networks from `spec` (the layout of the `tiny-sd3` preset), random weights.

    Built by the studio's own builder of keras-hub networks (the one
    `SD3Backbone.from_preset("tiny-sd3")` uses), so that SD3.5 medium's
    size needs no Kaggle download; keras-hub's own initialisers draw the
    weights (no seeded copy: nothing compares them).
    """
    from studio.models.sd3 import SD3Backbone
    from studio.models.sd3.sd3_backbone import _build_hub_backbone
    from studio.tokenizers import CLIPTokenizer

    hub = _build_hub_backbone(spec, policy)
    return SD3Backbone(
        hub,
        CLIPTokenizer.byte_level(sequence_length=spec["tokenizer"]["sequence_length"]),
        image_size=spec["image_size"],
        flow_schedule=spec["flow_schedule"],
        name="gpu-check-sd3",
    )


def _sd3_dreambooth_lora(backbone, family, batch_size):
    """The trainer, its batch, and how it checkpoints (or why not)."""
    import keras

    from studio.trainers.dreambooth.sd3_lora_trainer import SD3LoRATrainer

    options = {}
    if not family.remat:
        remat = "off"
    elif "remat" in inspect.signature(SD3LoRATrainer).parameters:
        options["remat"] = True
        remat = "MMDiT joint blocks"
    else:
        remat = "not measured: SD3LoRATrainer has no gradient checkpointing"
    trainer = SD3LoRATrainer(
        backbone,
        lora_rank=LORA_RANK,
        prior_loss_weight=PRIOR_LOSS_WEIGHT,
        seed=TRAIN_SEED,
        **options,
    )
    trainer.compile(
        optimizer=keras.optimizers.AdamW(LORA_LEARNING_RATE, weight_decay=ADAMW_WEIGHT_DECAY), jit_compile=True
    )
    # Cached text embeddings as `sd3_text_embeddings` stores them: the CLIP
    # context padded to T5's width, then T5's place as zero tokens.
    examples = 2 * batch_size
    mmdit = backbone.mmdit
    length = backbone.tokenizer.sequence_length + backbone.clip_l.max_sequence_length
    rng = np.random.default_rng(TRAIN_SEED)
    context = rng.standard_normal((examples, length, mmdit.context_shape[-1])).astype("float32")
    context[:, backbone.tokenizer.sequence_length :] = 0.0
    batch = {
        "moments": _moments(family, examples, backbone.latent_channels),
        "context": context,
        "pooled_projection": rng.standard_normal(
            (examples, mmdit.pooled_projection_shape[-1])
        ).astype("float32"),
        "is_class_image": np.array([False] * batch_size + [True] * batch_size),
    }
    return trainer, batch, remat


def _moments(family, count, latent_channels):
    """Random VAE moments (mean, log-variance), NHWC, as the latent cache stores them."""
    size = family.resolution // 8
    rng = np.random.default_rng(TRAIN_SEED + 1)
    moments = rng.standard_normal((count, size, size, 2 * latent_channels)).astype("float32")
    moments[..., latent_channels:] = -2.0  # A small, realistic log-variance.
    return moments


RUNNERS = {("sdxl", "train"): sdxl_train_row, ("sd3", "train"): sd3_train_row}
