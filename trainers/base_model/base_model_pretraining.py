"""`pretrain_base_model(settings, out)`: the embedded `tiny-shapes` model, trained from scratch.

Two phases, each a resumable `TrainingRun` in its own run folder under
`out`: `vae/` fits the VAE to the shapes world's images; `diffusion/`
then trains the text encoder and UNet on the frozen VAE's latents. The
model is saved to `out/model` (a folder every `model` setting accepts);
`ship_base_model` copies its weights into the package
(`studio/pretrained/`), where the `tiny-shapes` preset loads them.
Everything follows from `settings.seed`.
"""

import os
import shutil
import sys

from studio.errors import InvalidInputError

PRESET = "tiny-shapes"
# The learning rate decays along a cosine to this share of its peak.
FINAL_LR_FRACTION = 0.1
# Images encoded per VAE call when the latent scale and moments are measured.
ENCODE_BATCH_SIZE = 500


def pretrain_base_model(settings, out, resume=False):
    """Both phases; returns the saved model folder (`out/model`).

    Args:
        settings: a `BaseModelSettings`.
        out: the folder of the two run folders and the model.
        resume: continue an interrupted run; a finished phase is skipped.

    Raises:
        ValueError: the settings are invalid, or a phase's folder already
            holds a run and `resume` is False.
    """
    import keras
    import numpy as np

    from studio.datasets.shapes_world import ShapesWorld
    from studio.datasets.shapes_world_batches import ShapesWorldBatches
    from studio.models import StableDiffusionBackbone
    from studio.trainers.base_model.base_model_trainer import BaseModelTrainer
    from studio.trainers.base_model.vae_trainer import VAETrainer

    settings.validate()
    seed = settings.seed
    backbone = StableDiffusionBackbone.from_preset(PRESET, load_weights=False, seed=seed)
    world = ShapesWorld(backbone.image_size)
    images, _, scenes = world.sample(settings.pool_size, seed=seed)

    vae = VAETrainer(backbone.vae_encoder, backbone.vae_decoder, seed=seed)
    vae.compile(optimizer=keras.optimizers.Adam(
        learning_rate_schedule(settings, settings.vae_lr, settings.vae_steps)))
    run_phase(vae, os.path.join(out, "vae"), settings, settings.vae_steps,
               ShapesWorldBatches(images, scenes, world, settings.batch_size, seed), resume)
    for network in (backbone.vae_encoder, backbone.vae_decoder):
        network.load_weights(os.path.join(out, "vae", f"{network.name}.weights.h5"))

    moments = pool_moments(backbone, images)
    # Stable Diffusion scales latents to unit variance; measure ours the same way.
    means = moments[..., : moments.shape[-1] // 2]
    backbone.latent_scale = float(1.0 / np.std(means))
    print(f"Latent scale: {backbone.latent_scale:.5f}")

    trainer = BaseModelTrainer(backbone, min_snr_gamma=settings.min_snr_gamma or None, seed=seed)
    trainer.compile(optimizer=keras.optimizers.Adam(
        learning_rate_schedule(settings, settings.lr, settings.steps)))
    batches = ShapesWorldBatches(images, scenes, world, settings.batch_size, seed + 1,
                                 tokenizer=backbone.tokenizer, moments=moments)
    run_phase(trainer, os.path.join(out, "diffusion"), settings, settings.steps, batches, resume)
    for name in ("text_encoder", "unet"):
        getattr(backbone, name).load_weights(os.path.join(out, "diffusion", f"{name}.weights.h5"))
    return backbone.save_to_preset(os.path.join(out, "model"))


def ship_base_model(model_folder):
    """Copies a saved model's weights into `studio/pretrained/`; returns the paths."""
    return ship_packaged_weights(PRESET, model_folder,
                                 ("text_encoder", "unet", "vae_encoder", "vae_decoder"))


def ship_packaged_weights(preset, model_folder, components):
    """Copies the `components` of a saved model into the package as `preset`'s; returns the paths."""
    from studio.files.atomic_write import atomic_file
    from studio.models.presets import BACKBONE_PRESETS
    from studio.models.stable_diffusion_backbone import (
        packaged_weights_path,
        packaged_weights_prefixes,
    )

    prefixes = packaged_weights_prefixes(BACKBONE_PRESETS[preset]["packaged_weights"], components)
    paths = []
    for name in components:
        target = packaged_weights_path(prefixes[name], name)
        with atomic_file(target) as file, open(
            os.path.join(model_folder, f"{name}.weights.h5"), "rb"
        ) as source:
            shutil.copyfileobj(source, file)
        paths.append(target)
    return paths


def pool_moments(backbone, images):
    """The VAE moments of a pool of uint8 images, encoded in batches (numpy)."""
    import keras
    import numpy as np

    return np.concatenate([
        keras.ops.convert_to_numpy(
            backbone.encode_moments(
                backbone.image_preprocessor.to_model_range(images[i : i + ENCODE_BATCH_SIZE])
            )
        )
        for i in range(0, len(images), ENCODE_BATCH_SIZE)
    ])


def learning_rate_schedule(settings, lr, steps):
    """Linear warm-up to `lr`, then a cosine to `FINAL_LR_FRACTION` of it, over `steps`."""
    import keras

    warmup = min(settings.warmup_steps, steps // 2)
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(steps - warmup, 1),
        alpha=FINAL_LR_FRACTION,
        warmup_target=lr,
        warmup_steps=warmup,
    )


def run_phase(trainer, folder, settings, steps, batches, resume):
    """Fits `trainer` in the run folder `folder`; a finished phase of `steps` is skipped."""
    from studio.trainers.run.run_directory import RunDirectory
    from studio.trainers.run.training_run import STATUS_COMPLETED, TrainingRun

    directory = RunDirectory(folder)
    summary = directory.read_summary() if directory.exists() else None
    if summary and summary.get("status") == STATUS_COMPLETED and summary.get("steps") == steps:
        print(f"{folder}: already trained ({steps} steps)", file=sys.stderr)
        return summary
    if directory.exists() and not resume:
        raise InvalidInputError(
            f"{folder} already holds a training run. Add --resume to continue it, or "
            f"choose another --out. Received: {folder}"
        )
    if not directory.exists():
        config = settings.to_config()
        # As recorded before: 0 (off) is kept as None (SD3's settings have none).
        if "min_snr_gamma" in config:
            config["min_snr_gamma"] = settings.min_snr_gamma or None
        directory.create(config)
    training = TrainingRun(
        trainer, directory, steps, save_every=settings.save_every, log_every=settings.log_every,
    )
    return training.fit(iter(batches), resume=resume)
