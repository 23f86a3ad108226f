"""`pretrain_sd3_shapes_model(settings, out)`: the embedded `tiny-shapes-sd3` model.

The shapes world in the SD3 family, on keras-hub's classes at a small size
(`TINY_SHAPES_SD3_SPEC`, the `tiny-shapes-sd3` preset). CLIP-L and CLIP-G are tiny-shapes' shipped
text encoder re-expressed (`re_express_clip_in_sd3`) and frozen, as SD3's
encoders are; three resumable `TrainingRun`s then train the rest from
scratch: `out/vae/` fits keras-hub's VAE to the world's images,
`out/decoder/` trains its decoder on with the encoder frozen (as
Stability's `sd-vae-ft-mse` fine-tuned SD's decoder: the latents keep their
meaning, the images sharpen), the latents' shift and scale are measured (as
SD3's were), and `out/diffusion/` trains the MMDiT with flow matching on the
frozen VAE's latents.
The trained weights and the measured latent statistics go to `out/model/`;
`ship_sd3_shapes_model` copies the weights into the package
(`studio/pretrained/`), where a packaged spec loads them (its `vae` entry
must hold the measured shift and scale). Everything follows from `settings.seed` and
tiny-shapes' shipped text encoder.
"""

import os

PRESET = "tiny-shapes-sd3"
# The source of the text encoders.
SOURCE_PRESET = "tiny-shapes"
# `out/model/`'s record of the measured latent statistics.
LATENT_STATISTICS_FILE = "latent_statistics.json"
# The networks this pretraining trains (the files it writes and ships).
TRAINED_NETWORKS = ("vae", "mmdit")


def build_start_model(seed=0, latent_shift=None, latent_scale=None):
    """An untrained `tiny-shapes-sd3` `SD3Backbone` with tiny-shapes' text encoder as CLIP-L/G.

    Args:
        seed: seeds the random weights (NumPy, the same on every backend).
        latent_shift, latent_scale: the VAE's latent statistics (None: the
            preset's).
    """
    from studio.models import StableDiffusionBackbone
    from studio.models.presets import TINY_SHAPES_SD3_SPEC
    from studio.models.sd3 import SD3Backbone
    from studio.models.sd3.sd3_clip_re_expression import re_express_clip_in_sd3

    spec = dict(TINY_SHAPES_SD3_SPEC)
    vae = dict(spec["vae"])
    if latent_shift is not None:
        vae["shift"] = float(latent_shift)
    if latent_scale is not None:
        vae["scale"] = float(latent_scale)
    spec["vae"] = vae
    backbone = SD3Backbone.from_spec(spec, name=PRESET, load_weights=False, seed=seed)
    source = StableDiffusionBackbone.from_preset(SOURCE_PRESET)
    re_express_clip_in_sd3(source.text_encoder, backbone.hub_backbone)
    zero_modulations(backbone.mmdit)
    return backbone


def zero_modulations(mmdit):
    """DiT's adaLN-Zero start: every block's modulation and the output layer are zero.

    Each block then starts as the identity (its gates are zero) and the
    MMDiT predicts zero velocity; DiT found this start trains fastest, and
    SD3's MMDiT keeps DiT's initialisation. keras-hub initialises them
    randomly, as a model to be loaded rather than trained.
    """
    import numpy as np

    layers = [mmdit.output_ada_layer_norm.dense, mmdit.output_dense]
    for block in mmdit.joint_blocks:
        layers += [block.x_block.ada_layer_norm.dense, block.context_block.ada_layer_norm.dense]
    for layer in layers:
        for variable in layer.weights:
            variable.assign(np.zeros(variable.shape, variable.dtype))


def latent_statistics(moments):
    """`(shift, scale)` of the VAE latents: their mean and 1 / their std (SD3's convention)."""
    import numpy as np

    means = moments[..., : moments.shape[-1] // 2]
    return float(np.mean(means)), float(1.0 / np.std(means))


def pretrain_sd3_shapes_model(settings, out, resume=False):
    """The three phases; returns the model folder (`out/model`).

    Args:
        settings: an `SD3ShapesSettings`.
        out: the folder of the three run folders and the model.
        resume: continue an interrupted run; a finished phase is skipped.

    Raises:
        SettingsError: the settings are invalid.
        InvalidInputError: a phase's folder already holds a run and
            `resume` is False.
    """
    import keras

    from studio.datasets.shapes_world import ShapesWorld
    from studio.datasets.shapes_world_batches import ShapesWorldBatches
    from studio.trainers.base_model.base_model_pretraining import (
        learning_rate_schedule,
        pool_moments,
        run_phase,
    )
    from studio.trainers.base_model.sd3_base_model_trainer import (
        MMDIT_WEIGHTS_FILE,
        SD3BaseModelTrainer,
    )

    settings.validate()
    seed = settings.seed
    backbone = build_start_model(seed)
    world = ShapesWorld(backbone.image_size)
    images, _, scenes = world.sample(settings.pool_size, seed=seed)

    vae_file = _fit_vae(backbone, world, images, scenes, settings, os.path.join(out, "vae"),
                        settings.vae_steps, settings.vae_lr, seed, resume)
    backbone.vae.load_weights(vae_file)

    decoder_file = train_decoder(backbone, world, images, scenes, settings, out, resume)

    moments = pool_moments(backbone, images)
    shift, scale = latent_statistics(moments)
    print(f"Latent shift: {shift:.5f}, scale: {scale:.5f}")
    # The same seeded start, with the measured statistics in its VAE.
    backbone = build_start_model(seed, latent_shift=shift, latent_scale=scale)
    backbone.vae.load_weights(decoder_file)

    trainer = SD3BaseModelTrainer(backbone, seed=seed)
    trainer.compile(optimizer=keras.optimizers.Adam(
        learning_rate_schedule(settings, settings.lr, settings.steps)))
    batches = ShapesWorldBatches(images, scenes, world, settings.batch_size, seed + 1,
                                 tokenizer=backbone.tokenizer, moments=moments)
    folder = os.path.join(out, "diffusion")
    run_phase(trainer, folder, settings, settings.steps, batches, resume)
    backbone.mmdit.load_weights(os.path.join(folder, MMDIT_WEIGHTS_FILE))
    return save_sd3_shapes_model(backbone, os.path.join(out, "model"))


def train_decoder(backbone, world, images, scenes, settings, out, resume=False):
    """The decoder phase: `backbone.vae`'s decoder trains on, its encoder frozen.

    The encoder, so the latents, stay as they are: the phase sharpens the
    images without changing what the MMDiT learns (or, for a shipped
    MMDiT, learned). Returns the phase's VAE weights file (`out/decoder/`).
    """
    backbone.vae.encoder.trainable = False
    try:
        return _fit_vae(backbone, world, images, scenes, settings, os.path.join(out, "decoder"),
                        settings.decoder_steps, settings.decoder_lr, settings.seed + 2, resume)
    finally:
        backbone.vae.encoder.trainable = True


def _fit_vae(backbone, world, images, scenes, settings, folder, steps, lr, seed, resume):
    """Fits `backbone.vae`'s trainable part in the run folder `folder`; returns its weights file."""
    import keras

    from studio.datasets.shapes_world_batches import ShapesWorldBatches
    from studio.trainers.base_model.base_model_pretraining import learning_rate_schedule, run_phase
    from studio.trainers.base_model.sd3_vae_trainer import VAE_WEIGHTS_FILE, SD3VAETrainer

    trainer = SD3VAETrainer(backbone.vae, seed=seed)
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate_schedule(settings, lr, steps)))
    run_phase(trainer, folder, settings, steps,
              ShapesWorldBatches(images, scenes, world, settings.batch_size, seed), resume)
    return os.path.join(folder, VAE_WEIGHTS_FILE)


def save_sd3_shapes_model(backbone, folder):
    """Writes the trained networks and the latent statistics into `folder`; returns it."""
    from studio.files.atomic_write import atomic_path
    from studio.files.json_file import write_json

    os.makedirs(folder, exist_ok=True)
    networks = {"vae": backbone.vae, "mmdit": backbone.mmdit}
    for name in TRAINED_NETWORKS:
        with atomic_path(os.path.join(folder, f"{name}.weights.h5"),
                         suffix=".weights.h5") as staging:  # fmt: skip
            networks[name].save_weights(staging)
    write_json(os.path.join(folder, LATENT_STATISTICS_FILE),
               {"shift": backbone.latent_shift, "scale": backbone.latent_scale})
    return folder


def load_sd3_shapes_model(folder):
    """The `tiny-shapes-sd3` backbone of a model folder `pretrain_sd3_shapes_model` wrote."""
    from studio.files.json_file import read_json

    statistics = read_json(os.path.join(folder, LATENT_STATISTICS_FILE))
    backbone = build_start_model(0, statistics["shift"], statistics["scale"])
    backbone.vae.load_weights(os.path.join(folder, "vae.weights.h5"))
    backbone.mmdit.load_weights(os.path.join(folder, "mmdit.weights.h5"))
    return backbone


def ship_sd3_shapes_model(model_folder):
    """Copies a model folder's trained weights into `studio/pretrained/`; returns the paths.

    The preset's `vae` entry must then hold the folder's measured latent
    statistics (`latent_statistics.json`), as the command prints them.
    """
    import shutil

    from studio.files.atomic_write import atomic_file
    from studio.models.presets import TINY_SHAPES_SD3_SPEC
    from studio.models.stable_diffusion_backbone import packaged_weights_path

    prefixes = TINY_SHAPES_SD3_SPEC["packaged_weights"]
    paths = []
    for name in TRAINED_NETWORKS:
        target = packaged_weights_path(prefixes[name], name)
        with atomic_file(target) as file, open(
            os.path.join(model_folder, f"{name}.weights.h5"), "rb"
        ) as source:
            shutil.copyfileobj(source, file)
        paths.append(target)
    return paths
