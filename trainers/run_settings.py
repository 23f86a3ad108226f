"""A training command's settings: defaults, then a resumed run's config, then the options."""

# The `--devices` option of the training commands (see `DataParallelDevices`).
DEVICES_HELP = (
    "data-parallel training on this many GPUs (each takes an equal part of every batch); "
    "without GPUs the CPU is split into as many logical devices, a testing aid. A resumed "
    "run may change it (default: 1)"
)

# The dtype policies a training run may use (`--precision`).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# The policy of networks that train nothing (textual inversion's), per
# `--precision`: under mixed precision their weights are stored in the
# compute dtype, as diffusers' `weight_dtype` does. Keras' mixed policies
# keep float32 weights for the optimizer, which frozen weights never see:
# half the memory, and no float32 -> half cast of every weight every step.
# They compute in the same dtype as under the mixed policy, with the same
# half-precision kernels (only normalisation scales are rounded too).
FROZEN_NETWORK_POLICIES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
# The `--model` option of the training commands.
MODEL_HELP = (
    "preset (sd-v1, sd-v2, tiny), a folder saved by the studio, a diffusers folder, or an "
    "SD 1.x / 2.x .safetensors / .ckpt file (converted on load)"
)


def add_training_options(add):
    """Adds the options both training commands share about the step and its data.

    `add` is a parser's `add_argument`. Defaults are None, filled in by
    `resolve_run_settings`, so that a resumed run can tell given options.
    """
    add("--warmup-steps", type=int, help="linear learning-rate warm-up steps (default: 0)")
    add("--grad-accum", type=int, help="batches accumulated per optimizer step (default: 1)")
    add("--resolution", type=int, help="training image size (default: the model's)")
    add("--min-snr-gamma", type=float, help="min-SNR loss weighting, e.g. 5 (default: off)")
    add("--offset-noise", type=float, help="offset-noise strength, e.g. 0.05 (default: off)")
    add("--latent-variants", type=int,
        help="augmented variants per image encoded once into the latent cache; 0 encodes "
        "every step instead (default: 8)")
    add("--cache-dir", help="latent cache folder (default: ~/.keras/studio-latents)")


def add_run_folder_options(add, default_out):
    """Adds the options both training commands share about checkpoints, files and devices.

    `default_out` describes `--out`'s default in the help.
    """
    add("--save-every", type=int, help="steps between checkpoints (default: 500)")
    add("--log-every", type=int, help="steps between TensorBoard points (default: 10)")
    add("--keep-checkpoints", type=int, help="newest checkpoints kept (default: all)")
    add("--weights", help="folder holding the preset's weight files, for offline use")
    add("--vocabulary", help="local CLIP vocabulary file, for offline use")
    add("--out", help=f"run folder (default: {default_out})")
    add("--resume", action="store_true",
        help="continue the run in --out from its last checkpoint")
    add("--devices", type=int, help=DEVICES_HELP)


def option_name(key):
    """The command-line option of a setting: "grad_accum" -> "--grad-accum"."""
    return "--" + key.replace("_", "-")


def resolve_run_settings(args, defaults, resumable, required, command, positive=()):
    """Merges a `studio train ...` command's settings and checks them.

    Options left at None on the command line take the resumed run's stored
    value (with `--resume`), else the default; a resumed run may change only
    the `resumable` settings, since the others define it.

    Args:
        args: the parsed `argparse.Namespace`; its `resume` and `out`.
        defaults: dict setting -> default value (None: not set).
        resumable: the settings a resumed run may change.
        required: the settings that must end up set.
        command: the command's name for messages, e.g. "studio train dreambooth".
        positive: the integer settings that must be at least 1.

    Returns:
        The settings dict.

    Raises:
        ValueError: `--resume` without `--out`, a resumed run given another
            value of a setting that defines it, a required setting missing,
            or a `positive` setting below 1.
        FileNotFoundError: `--resume` of a folder that holds no run.
    """
    given = {key: getattr(args, key) for key in defaults if getattr(args, key, None) is not None}
    settings = dict(defaults)
    if args.resume:
        from studio.trainers.run.run_directory import RunDirectory

        if not args.out:
            raise ValueError("--resume needs --out, the run folder to continue. Received: no --out")
        stored = RunDirectory(args.out).read_config()
        settings.update({key: stored[key] for key in settings if key in stored})
        changed = [
            f"{option_name(key)} {value!r} (the run has {settings[key]!r})"
            for key, value in given.items()
            if key not in resumable and value != settings[key]
        ]
        if changed:
            raise ValueError(
                "A resumed run keeps its settings; only "
                f"{', '.join(option_name(key) for key in resumable)} may change. "
                f"Received: {'; '.join(changed)}"
            )
    settings.update(given)
    missing = [option_name(key) for key in required if not settings[key]]
    if missing:
        raise ValueError(f"`{command}` needs {', '.join(missing)}. Received: none")
    for key in positive:
        if settings[key] < 1:
            raise ValueError(f"{option_name(key)} must be at least 1. Received: {settings[key]}")
    return settings


def set_up_devices(settings):
    """The run's `DataParallelDevices` for `settings["devices"]`, set up.

    Called first in a command, before anything uses the devices: TensorFlow
    and JAX fix them when they start. Prints the devices of a data-parallel
    run.

    Raises:
        ValueError: the machine has fewer devices than asked for, or
            gradient accumulation where the devices cannot have it.
    """
    from studio.trainers.distributed.data_parallel_devices import DataParallelDevices

    devices = DataParallelDevices(settings["devices"]).setup()
    devices.check_gradient_accumulation(settings["grad_accum"])
    if devices.is_data_parallel:
        print(f"Data-parallel training on {devices.describe()}.")
    return devices


def frozen_network_policy(precision):
    """The dtype policy of networks that train nothing under `precision` (a `PRECISIONS` name)."""
    return FROZEN_NETWORK_POLICIES.get(precision, precision)


def load_backbone(settings, args, devices, frozen=False):
    """The run's base model (`settings["model"]`, in its precision), built in `devices`' scope.

    `args` carries the command's `--weights` and `--vocabulary`. `frozen`:
    no network of the backbone will train, so under mixed precision the
    weights are stored in the compute dtype (`frozen_network_policy`).
    """
    from studio.interop import load_backbone

    precision = settings["precision"]
    with devices.scope():
        return load_backbone(
            settings["model"],
            weights=args.weights,
            vocabulary=args.vocabulary,
            dtype=frozen_network_policy(precision) if frozen else precision,
        )


def fit_run(trainer, run_directory, settings, batches, resume, sample_prompts, command):
    """Trains `trainer` as a command's `settings` say; returns the run's summary, or None.

    Sample images (every `sample_every` steps; 0 or None: none) come from
    `sample_prompts` with the run's seed. A run stopped by non-finite
    losses prints the reason under the command's name and returns None
    (its last good checkpoint is kept).
    """
    import sys

    from studio.trainers.run.non_finite_loss_error import NonFiniteLossError
    from studio.trainers.run.training_run import TrainingRun

    def sampler():
        return trainer.sample_images(
            sample_prompts, seed=settings["seed"], num_steps=settings["sample_steps"]
        )

    training = TrainingRun(
        trainer,
        run_directory,
        settings["steps"],
        save_every=settings["save_every"],
        log_every=settings["log_every"],
        sampler=sampler,
        sample_every=settings["sample_every"] or None,
        keep_checkpoints=settings["keep_checkpoints"],
    )
    try:
        return training.fit(batches, resume=resume)
    except NonFiniteLossError as error:
        print(f"{command}: {error}", file=sys.stderr)
        return None


def describe_loss(summary):
    """", final loss 0.1234" for a run's summary; "" when no step reported a loss."""
    loss = summary["final_loss"]
    return "" if loss is None else f", final loss {loss:.4f}"
