"""DreamBooth LoRA on an SD3 model: `build_dreambooth`'s path for the `sd3` family.

The run is DreamBooth's (class images from the model, instance and class
datasets, the latent cache, cached text embeddings unless CLIP-L/G train
or a pivotal token's rows do); only the trainer (`SD3LoRATrainer`: MMDiT
LoRA, with `--train-text-encoder` CLIP-L/G LoRA too, flow matching; with
`--token`, `SD3PivotalTuningTrainer`) and the cached conditioning
(CLIP-L/G context and pooled projection) differ.
"""

from studio.errors import SettingsError

# DreamBooth options an SD3 run does not have yet, with what to do instead.
_UNSUPPORTED = (
    ("min_snr_gamma", "--min-snr-gamma (flow matching weights timesteps its own way)"),
    ("offset_noise", "--offset-noise (a DDPM option)"),
)


def check_sd3_settings(settings):
    """Refuses what SD3 DreamBooth does not do: full fine-tuning and DDPM-only options.

    Raises:
        SettingsError: with the option and the way out.
    """
    if settings.lora_rank is None:
        raise SettingsError(
            "SD3 DreamBooth trains LoRA on the MMDiT only: add --lora-rank (e.g. 4). "
            f"Received: --model {settings.model} without --lora-rank"
        )
    for field, option in _UNSUPPORTED:
        if getattr(settings, field):
            raise SettingsError(
                f"{option} is not supported for SD3 models yet; leave it out. "
                f"Received: --model {settings.model} with {option.split(' ')[0]}"
            )


def build_sd3_trainer(settings, backbone, devices):
    """The compiled `SD3LoRATrainer` of `settings` (with `settings.token`, an
    `SD3PivotalTuningTrainer`), in `devices`' scope."""
    from studio.trainers.dreambooth.dreambooth_training import build_optimizer
    from studio.trainers.dreambooth.sd3_lora_trainer import SD3LoRATrainer
    from studio.trainers.dreambooth.sd3_pivotal_tuning_trainer import SD3PivotalTuningTrainer

    trainer_class, pivotal = SD3LoRATrainer, {}
    if settings.is_pivotal:
        trainer_class = SD3PivotalTuningTrainer
        pivotal = dict(placeholder_token=settings.token, initializer_word=settings.init_word,
                       embedding_steps=settings.embedding_steps())
    with devices.scope():
        trainer = trainer_class(
            backbone,
            **pivotal,
            lora_rank=settings.lora_rank,
            lora_alpha=settings.lora_alpha,
            lora_mlp=bool(settings.lora_feed_forward),
            prior_loss_weight=settings.prior_loss_weight,
            remat=bool(settings.remat),
            train_text_encoder=bool(settings.train_text_encoder),
            seed=settings.seed,
            **settings.flow_matching_options(),
        )
        trainer.compile(optimizer=build_optimizer(settings), jit_compile=devices.jit_compile(True))
    return trainer


def sd3_text_embeddings(backbone, token_ids):
    """Each distinct prompt's `{"context", "pooled_projection"}`, encoded once.

    Returns:
        `(table, embeddings)`: the distinct token-id rows, int32, and a dict
        of float32 arrays by conditioning name, one row per table row
        (`attach_text_embeddings` takes both).
    """
    import numpy as np
    from keras import ops

    from studio.trainers.dreambooth.dreambooth_text_embeddings import ENCODE_BATCH_SIZE

    table = np.unique(np.asarray(token_ids, dtype=np.int32), axis=0)
    parts = {}
    for start in range(0, len(table), ENCODE_BATCH_SIZE):
        encoded = backbone.encode_text(table[start : start + ENCODE_BATCH_SIZE])
        for name, value in encoded.items():
            parts.setdefault(name, []).append(ops.convert_to_numpy(value).astype("float32"))
    return table, {name: np.concatenate(values) for name, values in parts.items()}
