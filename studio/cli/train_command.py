"""`studio train ...`: fine-tune Stable Diffusion from the command line.

`studio train textual-inversion` learns a placeholder token from a folder
of images; `studio train dreambooth` (in `dreambooth_command`) fine-tunes
the UNet on a subject.
"""

import hashlib
import os

from studio.trainers.run_settings import (
    MODEL_HELP,
    PRECISIONS,
    add_run_folder_options,
    add_training_options,
    describe_loss,
    fit_run,
    load_backbone,
    resolve_run_settings,
    set_up_devices,
)

PROPERTIES = ("object", "style")
# Exit codes: done, stopped by a non-finite loss, bad usage.
EXIT_OK = 0
EXIT_NON_FINITE = 1
EXIT_USAGE = 2
DEFAULT_RUNS_FOLDER = "runs"

# Textual-inversion settings, their defaults, and which of them a resumed run
# may change (the others define the run and must stay as they were).
TEXTUAL_INVERSION_DEFAULTS = {
    "model": None,
    "data": None,
    "token": None,
    "init_word": None,
    "num_vectors": 1,
    "property": "object",
    "steps": 2000,
    "lr": 5e-3,
    "warmup_steps": 0,
    "batch_size": 1,
    "grad_accum": 1,
    "resolution": None,  # The model's own resolution.
    "precision": "float32",
    "seed": 0,
    "min_snr_gamma": None,
    "offset_noise": 0.0,
    "norm_regularization": 0.0,
    "latent_variants": 8,
    "sample_every": None,
    "sample_prompts": None,
    "sample_steps": 25,
    "save_every": 500,
    "log_every": 10,
    "keep_checkpoints": None,
    "devices": 1,
}
RESUMABLE_SETTINGS = (
    "steps", "sample_every", "save_every", "log_every", "keep_checkpoints", "devices",
)
REQUIRED_SETTINGS = ("model", "data", "token", "init_word")


def add_parser(subparsers):
    """Registers `train` and its `textual-inversion` subcommand."""
    train = subparsers.add_parser(
        "train",
        help="teach the model a new concept",
        description="Fine-tune Stable Diffusion on a folder of images.",
    )
    methods = train.add_subparsers(dest="train_method", metavar="METHOD")
    _add_textual_inversion(methods)
    # Imported here: the DreamBooth command module imports nothing heavy either.
    from studio.cli.dreambooth_command import add_dreambooth_parser

    add_dreambooth_parser(methods)
    from studio.cli.base_command import add_base_parser

    add_base_parser(methods)
    train.set_defaults(run=lambda args: _print_help(train))
    return train


def _add_textual_inversion(methods):
    parser = methods.add_parser(
        "textual-inversion",
        help="learn a new word (placeholder token) for a concept",
        description=(
            "Learn token vectors for a placeholder such as <cat-toy> from a folder "
            "of images, with the model frozen. The run folder gets the config, "
            "checkpoints, TensorBoard logs, sample images, embedding.safetensors and "
            "summary.json. With --resume, only --out is needed: the other settings "
            "come from the run's config.json (--steps and the intervals may change)."
        ),
    )
    add = parser.add_argument
    # Defaults are None here and filled in `run`, so that a resumed run can
    # tell the options given on its command line from the defaults.
    add("--model", help=MODEL_HELP)
    add("--data", help="folder of training images (caption .txt files optional)")
    add("--token", help='the placeholder to learn, e.g. "<cat-toy>"')
    add("--init-word", help="word or phrase the vectors start from, e.g. toy")
    add("--num-vectors", type=int, help="vectors for the token (default: 1)")
    add("--property", choices=PROPERTIES,
        help="prompt templates: object or style (default: object)")
    add("--steps", type=int, help="optimizer steps in the run (default: 2000)")
    add("--lr", type=float, help="learning rate (default: 5e-3)")
    add("--batch-size", type=int,
        help="images per batch, split evenly across --devices (default: 1)")
    add("--precision", choices=PRECISIONS, help="dtype policy (default: float32)")
    add("--seed", type=int, help="seed of data order, noise and tiny models' weights (default: 0)")
    add("--norm-regularization", type=float,
        help="weight pulling vector norms to the initializer's (default: off)")
    add_training_options(add)
    add("--sample-every", type=int,
        help="steps between sample images; 0: none (default: none)")
    add("--sample-prompt", dest="sample_prompts", action="append",
        help="prompt of the sample images; repeat for several (default: two templates)")
    add("--sample-steps", type=int, help="sampling steps of sample images (default: 25)")
    add_run_folder_options(add, f"{DEFAULT_RUNS_FOLDER}/<token>")
    add("--no-jit", dest="jit", action="store_false",
        help="never compile the step with XLA/jit (default: XLA on GPUs and under JAX; "
        "TensorFlow on a CPU runs a graph without XLA, which is faster there)")
    parser.set_defaults(run=run)
    return parser


def _print_help(parser):
    parser.print_help()
    return EXIT_USAGE


def resolve_settings(args):
    """The run's settings: defaults, then the resumed run's config, then the options.

    Raises:
        ValueError: a required setting is missing, or a resumed run is given
            a setting that defines the run with another value.
    """
    settings = resolve_run_settings(
        args,
        TEXTUAL_INVERSION_DEFAULTS,
        RESUMABLE_SETTINGS,
        REQUIRED_SETTINGS,
        "studio train textual-inversion",
        positive=("num_vectors", "steps", "batch_size", "grad_accum", "devices"),
    )
    from studio.trainers.distributed.data_parallel_devices import DataParallelDevices

    DataParallelDevices(settings["devices"]).split_batch(
        settings["batch_size"], f"--batch-size {settings['batch_size']}"
    )
    if settings["latent_variants"] < 0:
        raise ValueError(
            f"--latent-variants must be >= 0. Received: {settings['latent_variants']}"
        )
    return settings


def run(args):
    """Runs `studio train textual-inversion`; returns the exit code."""
    settings = resolve_settings(args)
    devices = set_up_devices(settings)
    out = args.out or os.path.join(
        DEFAULT_RUNS_FOLDER, "".join(c for c in settings["token"] if c.isalnum() or c in "-_")
    )

    from studio.trainers.run.run_directory import RunDirectory

    run_directory = RunDirectory(out)
    if not args.resume and run_directory.exists():
        raise ValueError(
            f"{out} already holds a training run. Add --resume to continue it, or "
            f"choose another --out. Received: --out {out}"
        )
    # Presets without weights (tiny) get the same seeded random weights in
    # every process (`from_preset`), so a resumed run has the same model.
    trainer, dataset = build_textual_inversion(settings, args, devices)
    if not args.resume:
        run_directory.create(settings)
    else:
        run_directory.write_config(settings)

    prompts = settings["sample_prompts"] or default_sample_prompts(
        settings["token"], settings["property"]
    )

    summary = fit_run(trainer, run_directory, settings, dataset, args.resume, prompts,
                      "studio train textual-inversion")
    if summary is None:
        return EXIT_NON_FINITE
    from studio.trainers.textual_inversion.textual_inversion_trainer import EMBEDDING_FILE

    print(
        f"Trained {summary['steps']} steps{describe_loss(summary)}. "
        f"Embedding: {run_directory.file(EMBEDDING_FILE)}"
    )
    return EXIT_OK


def build_textual_inversion(settings, args, devices=None):
    """The compiled trainer and its training batches for `settings`.

    The backbone, trainer and optimizer are built in the scope of `devices`
    (a set-up `DataParallelDevices`; None: one device).
    """
    import keras

    from studio.datasets import ConceptDataset, ImageFolder, LatentCache
    from studio.trainers.distributed.data_parallel_devices import DataParallelDevices
    from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer
    from studio.trainers.warmup_schedule import WarmupSchedule

    devices = devices or DataParallelDevices()
    backbone = load_backbone(settings, args, devices, frozen=True)
    with devices.scope():
        trainer = TextualInversionTrainer(
            backbone,
            settings["token"],
            settings["init_word"],
            num_vectors=settings["num_vectors"],
            min_snr_gamma=settings["min_snr_gamma"],
            offset_noise=settings["offset_noise"],
            norm_regularization=settings["norm_regularization"],
            seed=settings["seed"],
        )
        accumulation = settings["grad_accum"]
        schedule = WarmupSchedule(
            settings["lr"],
            warmup_steps=settings["warmup_steps"],
            gradient_accumulation_steps=accumulation,
        )
        optimizer = keras.optimizers.Adam(
            schedule, gradient_accumulation_steps=accumulation if accumulation > 1 else None
        )
        # "auto": XLA with a GPU and jit under JAX; on CPU-only TensorFlow a
        # graph without XLA, as XLA:CPU's convolutions are slower than oneDNN's.
        jit_compile = "auto" if getattr(args, "jit", True) else False
        trainer.compile(optimizer=optimizer, jit_compile=devices.jit_compile(jit_compile))

    folder = ImageFolder(settings["data"], resolution=settings["resolution"] or backbone.image_size)
    cache = None
    if settings["latent_variants"]:
        cache = LatentCache(
            backbone.vae_encoder,
            model_id=weights_id(backbone.vae_encoder),
            cache_dir=args.cache_dir,
            num_variants=settings["latent_variants"],
        )
    dataset = ConceptDataset(
        folder, backbone.tokenizer, settings["token"],
        templates=settings["property"], latent_cache=cache,
    )
    batches = devices.dataset(
        lambda: dataset.build(batch_size=settings["batch_size"], seed=settings["seed"]),
        # Without the cache the pipeline augments with keras_cv layers.
        rebuildable=cache is not None,
    )
    return trainer, batches


def default_sample_prompts(token, property):
    """The first two prompt templates of `property`, filled with `token`."""
    from studio.prompts import PromptTemplates

    return PromptTemplates.get(property).fill(token)[:2]


def weights_id(network):
    """A short id of a network's weights and dtype policy (the latent cache's key).

    Hashing the weights themselves (a fraction of a second for SD's VAE
    encoder) keeps random-weight presets and saved folders apart without
    trusting file names.
    """
    import keras

    digest = hashlib.sha256(network.dtype_policy.name.encode("utf-8"))
    for weight in network.weights:
        digest.update(keras.ops.convert_to_numpy(weight).tobytes())
    return f"{network.name}-{digest.hexdigest()[:16]}"
