"""`studio train base`: pretrain the embedded `tiny-shapes` model from scratch on the shapes world.

Two phases, each a resumable `TrainingRun` in its own run folder under
`--out`: `vae/` fits the VAE to the world's images; `diffusion/` then
trains the text encoder and UNet on the frozen VAE's latents. The model is
saved to `--out/model` (a folder `--model` accepts everywhere), and
`--ship` copies its weights into the package (`studio/pretrained/`), where
the `tiny-shapes` preset loads them. Everything follows from `--seed`.
"""

import os
import shutil
import sys

PRESET = "tiny-shapes"
# The recipe of the shipped weights: `studio train base` with no options
# reproduces them (VAE 3000 steps, then 10000 diffusion steps with min-SNR
# weighting, gamma 5, the learning rate on a cosine to 10% of its peak).
# On 2 idle CPU cores it took 53 minutes: rendering the pool 1, the VAE 12
# (4.2 steps/s), the diffusion phase 40 (4.2 steps/s); the shipped run
# (shapes world v4) 50 minutes, with other light work on the machine.
BASE_DEFAULTS = {
    "seed": 0,
    "pool_size": 20000,
    "batch_size": 32,
    "vae_steps": 3000,
    "vae_lr": 1e-3,
    "steps": 10000,
    "lr": 1e-3,
    "warmup_steps": 200,
    "save_every": 1000,
    "log_every": 50,
}
# Steps of the shipped classifier (`studio train classifier`): at 1500 its
# shape accuracy on held-out augmented renders was 0.959 and still rising;
# at 4000, 0.997 (4 minutes on 2 cores).
CLASSIFIER_STEPS = 4000
DEFAULT_MIN_SNR_GAMMA = 5.0
# The learning rate decays along a cosine to this share of its peak.
FINAL_LR_FRACTION = 0.1
# Images encoded per VAE call when the latent scale and moments are measured.
ENCODE_BATCH_SIZE = 500


def add_base_parser(methods):
    """Registers `studio train base`."""
    parser = methods.add_parser(
        "base",
        help="pretrain the embedded tiny-shapes model from scratch",
        description=(
            "Train the tiny-shapes preset's VAE, then its text encoder and UNet, on the "
            "procedural shapes world, reproducibly from --seed. --out gets vae/ and "
            "diffusion/ run folders (checkpoints, TensorBoard logs) and model/ (a saved "
            "model). --resume continues an interrupted run; --ship copies the weights "
            "into the package."
        ),
    )
    add = parser.add_argument
    for key, value in BASE_DEFAULTS.items():
        add("--" + key.replace("_", "-"), type=type(value), default=value,
            help=f"(default: {value})")
    add("--min-snr-gamma", type=float, default=DEFAULT_MIN_SNR_GAMMA,
        help="min-SNR loss weighting of the diffusion phase; 0 turns it off "
        f"(default: {DEFAULT_MIN_SNR_GAMMA:g})")
    add("--out", default=os.path.join("runs", "base"), help="output folder (default: runs/base)")
    add("--resume", action="store_true", help="continue the run in --out")
    add("--ship", action="store_true",
        help="copy the trained weights into studio/pretrained/ (the tiny-shapes preset)")
    parser.set_defaults(run=run)
    _add_classifier_parser(methods)
    return parser


def _add_classifier_parser(methods):
    parser = methods.add_parser(
        "classifier",
        help="train the shapes-world attribute classifier that scores generated images",
        description=(
            "Train studio.evaluation.ShapesClassifier on rendered shapes-world images "
            "(reproducibly from --seed), print its accuracy on held-out renders, and save "
            "it to --out (or into the package with --ship)."
        ),
    )
    parser.add_argument("--steps", type=int, default=CLASSIFIER_STEPS,
                        help=f"(default: {CLASSIFIER_STEPS}, the shipped classifier's)")
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")
    parser.add_argument("--out", default=os.path.join("runs", "shapes_classifier.weights.h5"))
    parser.add_argument("--ship", action="store_true",
                        help="write the weights into studio/pretrained/ instead of --out")
    parser.set_defaults(run=run_classifier)


def run_classifier(args):
    """Runs `studio train classifier`; returns the exit code."""
    from studio.evaluation.shapes_classifier import packaged_classifier_path
    from studio.evaluation.shapes_classifier_training import train_shapes_classifier

    classifier, accuracy = train_shapes_classifier(steps=args.steps, seed=args.seed)
    print("Held-out accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
    path = packaged_classifier_path() if args.ship else args.out
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    staging = path[: -len(".weights.h5")] + ".tmp.weights.h5"
    classifier.save_weights(staging)
    os.replace(staging, path)
    print(f"Classifier: {path}")
    return 0


def run(args):
    """Runs `studio train base`; returns the exit code."""
    settings = {key: getattr(args, key) for key in BASE_DEFAULTS}
    settings["min_snr_gamma"] = args.min_snr_gamma or None
    for key, value in BASE_DEFAULTS.items():
        value = settings[key]
        if key not in ("vae_lr", "lr", "seed", "warmup_steps") and value < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be at least 1. Received: {value}")
    model_folder = pretrain(settings, args.out, resume=args.resume)
    print(f"Model: {model_folder}")
    if args.ship:
        for path in ship(model_folder):
            print(f"Shipped: {path}")
    return 0


def pretrain(settings, out, resume=False):
    """Both phases; returns the saved model folder (`out/model`)."""
    import keras
    import numpy as np

    from studio.datasets.shapes_world import ShapesWorld
    from studio.datasets.shapes_world_batches import ShapesWorldBatches
    from studio.models import StableDiffusionBackbone
    from studio.trainers.base_model.base_model_trainer import BaseModelTrainer
    from studio.trainers.base_model.vae_trainer import VAETrainer

    seed = settings["seed"]
    backbone = StableDiffusionBackbone.from_preset(PRESET, load_weights=False, seed=seed)
    world = ShapesWorld(backbone.image_size)
    images, _, scenes = world.sample(settings["pool_size"], seed=seed)

    vae = VAETrainer(backbone.vae_encoder, backbone.vae_decoder, seed=seed)
    vae.compile(optimizer=keras.optimizers.Adam(_schedule(settings, "vae_lr", "vae_steps")))
    _run_phase(vae, os.path.join(out, "vae"), settings, "vae_steps",
               ShapesWorldBatches(images, scenes, world, settings["batch_size"], seed), resume)
    for network in (backbone.vae_encoder, backbone.vae_decoder):
        network.load_weights(os.path.join(out, "vae", f"{network.name}.weights.h5"))

    moments = np.concatenate([
        keras.ops.convert_to_numpy(
            backbone.encode_moments(
                backbone.image_preprocessor.to_model_range(images[i : i + ENCODE_BATCH_SIZE])
            )
        )
        for i in range(0, len(images), ENCODE_BATCH_SIZE)
    ])
    # Stable Diffusion scales latents to unit variance; measure ours the same way.
    means = moments[..., : moments.shape[-1] // 2]
    backbone.latent_scale = float(1.0 / np.std(means))
    print(f"Latent scale: {backbone.latent_scale:.5f}")

    trainer = BaseModelTrainer(backbone, min_snr_gamma=settings.get("min_snr_gamma"), seed=seed)
    trainer.compile(optimizer=keras.optimizers.Adam(_schedule(settings, "lr", "steps")))
    batches = ShapesWorldBatches(images, scenes, world, settings["batch_size"], seed + 1,
                                 tokenizer=backbone.tokenizer, moments=moments)
    _run_phase(trainer, os.path.join(out, "diffusion"), settings, "steps", batches, resume)
    for name in ("text_encoder", "unet"):
        getattr(backbone, name).load_weights(os.path.join(out, "diffusion", f"{name}.weights.h5"))
    return backbone.save_to_preset(os.path.join(out, "model"))


def ship(model_folder):
    """Copies a saved model's weights into `studio/pretrained/`; returns the paths."""
    from studio.models.presets import BACKBONE_PRESETS
    from studio.models.stable_diffusion_backbone import packaged_weights_path

    prefix = BACKBONE_PRESETS[PRESET]["packaged_weights"]
    paths = []
    for name in ("text_encoder", "unet", "vae_encoder", "vae_decoder"):
        target = packaged_weights_path(prefix, name)
        staging = target + ".tmp"
        shutil.copyfile(os.path.join(model_folder, f"{name}.weights.h5"), staging)
        os.replace(staging, target)
        paths.append(target)
    return paths


def _schedule(settings, lr_key, steps_key):
    import keras

    steps = settings[steps_key]
    warmup = min(settings["warmup_steps"], steps // 2)
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(steps - warmup, 1),
        alpha=FINAL_LR_FRACTION,
        warmup_target=settings[lr_key],
        warmup_steps=warmup,
    )


def _run_phase(trainer, folder, settings, steps_key, batches, resume):
    from studio.trainers.run.run_directory import RunDirectory
    from studio.trainers.run.training_run import STATUS_COMPLETED, TrainingRun

    directory = RunDirectory(folder)
    summary = directory.read_summary() if directory.exists() else None
    if summary and summary.get("status") == STATUS_COMPLETED and (
        summary.get("steps") == settings[steps_key]
    ):
        print(f"{folder}: already trained ({settings[steps_key]} steps)", file=sys.stderr)
        return summary
    if directory.exists() and not resume:
        raise ValueError(
            f"{folder} already holds a training run. Add --resume to continue it, or "
            f"choose another --out. Received: {folder}"
        )
    if not directory.exists():
        directory.create(settings)
    training = TrainingRun(
        trainer, directory, settings[steps_key],
        save_every=settings["save_every"], log_every=settings["log_every"],
    )
    return training.fit(iter(batches), resume=resume)
