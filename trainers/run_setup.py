"""Starting a fine-tuning run: its devices, its base model, its folder, its fit.

Shared by `train_textual_inversion` and `train_dreambooth`.
"""

import contextlib
import os

from studio.trainers.settings.precision import frozen_network_policy


def set_up_devices(settings):
    """The run's `DataParallelDevices` for `settings.devices`, set up.

    Called first in a run, before anything uses the devices: TensorFlow
    and JAX fix them when they start. Prints the devices of a data-parallel
    run.

    Raises:
        ValueError: the machine has fewer devices than asked for, or
            gradient accumulation where the devices cannot have it.
    """
    from studio.trainers.distributed.data_parallel_devices import DataParallelDevices

    devices = DataParallelDevices(settings.devices).setup()
    devices.check_gradient_accumulation(settings.grad_accum)
    if devices.is_data_parallel:
        print(f"Data-parallel training on {devices.describe()}.")
    return devices


def load_backbone(settings, devices, frozen=False):
    """The run's base model (`settings.model`, in its precision), built in `devices`' scope.

    The one place a training run loads its model. `frozen`: no network of
    the backbone will train, so under mixed precision the weights are
    stored in the compute dtype (`frozen_network_policy`).
    """
    from studio.interop import load_backbone as load_model

    precision = settings.precision
    with devices.scope():
        return load_model(
            settings.model,
            weights=settings.weights,
            vocabulary=settings.vocabulary,
            dtype=frozen_network_policy(precision) if frozen else precision,
        )


def open_run_directory(settings, out, resume):
    """The `RunDirectory` at `out`, checked against `settings`.

    Raises:
        ValueError: `out` is not given, it holds a run and `resume` is
            False, or `resume` changes a setting that defines the run.
        FileNotFoundError: `resume` of a folder that holds no run.
    """
    from studio.trainers.run.run_directory import RunDirectory

    if not out:
        raise ValueError("A run needs its folder (--out). Received: no --out")
    run_directory = RunDirectory(os.fspath(out))
    if resume:
        settings.check_resume(run_directory.read_config())
    elif run_directory.exists():
        raise ValueError(
            f"{out} already holds a training run. Add --resume to continue it, or "
            f"choose another --out. Received: --out {out}"
        )
    return run_directory


@contextlib.contextmanager
def locked_run_directory(settings, out, resume):
    """`open_run_directory`, locked for this process while the `with` block runs.

    Raises:
        RunLockedError: another process trains in `out`.
        ValueError, FileNotFoundError: see `open_run_directory`.
    """
    from studio.trainers.run.run_directory import RunDirectory

    if not out:
        raise ValueError("A run needs its folder (--out). Received: no --out")
    with RunDirectory(os.fspath(out)).lock():
        yield open_run_directory(settings, out, resume)


def record_settings(run_directory, settings, resume):
    """Writes the run's `config.json`: a new run's folder is made first."""
    if resume:
        run_directory.write_config(settings.to_config())
    else:
        run_directory.create(settings.to_config())


def fit_run(trainer, run_directory, settings, batches, resume):
    """Trains `trainer` as `settings` say; returns the run's summary.

    Sample images (every `sample_every` steps; 0 or None: none) come from
    `settings.sample_prompt_list()` with the run's seed.

    Raises:
        NonFiniteLossError: the run stopped on non-finite losses (its last
            good checkpoint is kept).
    """
    from studio.trainers.run.training_run import TrainingRun

    prompts = settings.sample_prompt_list()

    def sampler():
        return trainer.sample_images(prompts, seed=settings.seed, num_steps=settings.sample_steps)

    training = TrainingRun(
        trainer,
        run_directory,
        settings.steps,
        save_every=settings.save_every,
        log_every=settings.log_every,
        sampler=sampler,
        sample_every=settings.sample_every or None,
        keep_checkpoints=settings.keep_checkpoints,
    )
    return training.fit(batches, resume=resume)


def latent_cache(backbone, settings):
    """The run's `LatentCache` of `backbone`'s VAE encoder, or None (`latent_variants` 0)."""
    if not settings.latent_variants:
        return None
    from studio.datasets import LatentCache, weights_id

    return LatentCache(
        backbone.vae_encoder,
        model_id=weights_id(backbone.vae_encoder),
        cache_dir=settings.cache_dir,
        num_variants=settings.latent_variants,
    )
