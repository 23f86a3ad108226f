"""`pretrain_sdxl_shapes_model(settings, out)`: the embedded `tiny-shapes-xl` model, from tiny-shapes.

tiny-shapes' shipped weights are re-expressed in the SDXL family
(`re_express_in_sdxl`: two text encoders read at their penultimate
layer, SDXL's UNet conditioning), then one resumable `TrainingRun` in
`out/diffusion/` adapts both text encoders and the UNet on the shapes
world's latents (tiny-shapes' VAE, frozen, is shared, not retrained).
The model is saved to `out/model`; `ship_sdxl_shapes_model` copies its
trained weights into the package (`studio/pretrained/`), where the
`tiny-shapes-xl` preset loads them. Everything follows from
`settings.seed` and the shipped tiny-shapes weights.
"""

import os

PRESET = "tiny-shapes-xl"
SOURCE_PRESET = "tiny-shapes"


def build_re_expressed_model(seed=0):
    """tiny-shapes re-expressed as an untrained `tiny-shapes-xl` `SDXLBackbone`.

    The networks SDXL adds (the last encoder layers, the added
    conditioning) are drawn from `seed` before the transfer sets them.
    """
    from studio.models import StableDiffusionBackbone
    from studio.models.sdxl import SDXLBackbone
    from studio.trainers.base_model.sdxl_re_expression import re_express_in_sdxl

    source = StableDiffusionBackbone.from_preset(SOURCE_PRESET)
    target = SDXLBackbone.from_preset(PRESET, load_weights=False, seed=seed)
    return re_express_in_sdxl(source, target)


def pretrain_sdxl_shapes_model(settings, out, resume=False):
    """Re-expresses tiny-shapes and adapts it; returns the saved model folder (`out/model`).

    Args:
        settings: an `SDXLShapesSettings`.
        out: the folder of the run folder (`diffusion/`) and the model.
        resume: continue an interrupted run; a finished run is not repeated.

    Raises:
        SettingsError: the settings are invalid.
        InvalidInputError: `out` already holds a run and `resume` is False.
    """
    import keras

    from studio.datasets.shapes_world import ShapesWorld
    from studio.datasets.shapes_world_batches import ShapesWorldBatches
    from studio.trainers.base_model.base_model_pretraining import (
        learning_rate_schedule,
        pool_moments,
        run_phase,
    )
    from studio.trainers.base_model.base_model_trainer import BaseModelTrainer, trained_networks

    settings.validate()
    seed = settings.seed
    backbone = build_re_expressed_model(seed)
    world = ShapesWorld(backbone.image_size)
    images, _, scenes = world.sample(settings.pool_size, seed=seed)
    moments = pool_moments(backbone, images)

    trainer = BaseModelTrainer(backbone, min_snr_gamma=settings.min_snr_gamma or None, seed=seed)
    trainer.compile(optimizer=keras.optimizers.Adam(
        learning_rate_schedule(settings, settings.lr, settings.steps)))
    batches = ShapesWorldBatches(images, scenes, world, settings.batch_size, seed + 1,
                                 tokenizer=backbone.tokenizer, moments=moments)
    folder = os.path.join(out, "diffusion")
    run_phase(trainer, folder, settings, settings.steps, batches, resume)
    for name in trained_networks(backbone):
        getattr(backbone, name).load_weights(os.path.join(folder, f"{name}.weights.h5"))
    return backbone.save_to_preset(os.path.join(out, "model"))


def ship_sdxl_shapes_model(model_folder):
    """Copies a saved model's trained weights into `studio/pretrained/`; returns the paths.

    The VAE is tiny-shapes' own files, which the preset shares.
    """
    from studio.trainers.base_model.base_model_pretraining import ship_packaged_weights

    return ship_packaged_weights(PRESET, model_folder, ("text_encoder", "text_encoder_2", "unet"))
