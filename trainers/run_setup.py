"""Starting a fine-tuning run: its devices, its base model, its folder, its fit.

Shared by `train_textual_inversion` and `train_dreambooth`.
"""

import contextlib
import os
import shutil

from studio.errors import (
    OutputLocationError,
    SettingsError,
    is_output_location_error,
    is_user_error,
    os_error_reason,
)
from studio.trainers.settings.precision import backbone_policy


def set_up_devices(settings):
    """The run's `DataParallelDevices` for `settings.devices`, set up.

    Called first in a run, before anything uses the devices: TensorFlow
    and JAX fix them when they start. Prints the devices of a data-parallel
    run.

    Raises:
        InvalidInputError: the machine has fewer devices than asked for, or
            gradient accumulation where the devices cannot have it.
    """
    from studio.trainers.distributed.data_parallel_devices import DataParallelDevices

    devices = DataParallelDevices(settings.devices).setup()
    devices.check_gradient_accumulation(settings.grad_accum)
    if devices.is_data_parallel:
        print(f"Data-parallel training on {devices.describe()}.")
    return devices


# Model families the trainers handle (`DiffusionBackbone.family`): SD 1.x/2.x,
# SD-XL and SD3 (textual inversion on both CLIP encoders; DreamBooth, LoRA only
# for SD3: `trainers/dreambooth/sd3_dreambooth_training.py`).
TRAINABLE_FAMILIES = ("stable_diffusion", "sdxl", "sd3")
DREAMBOOTH_FAMILIES = ("stable_diffusion", "sdxl", "sd3")


def load_backbone(settings, devices, frozen=False, families=TRAINABLE_FAMILIES):
    """The run's base model (`settings.model`, in its precision), built in `devices`' scope.

    The one place a training run loads its model. `frozen`: no weight of
    the backbone's networks will train (textual inversion, LoRA), so under
    mixed precision the weights are stored in the compute dtype
    (`backbone_policy`). `families`: the model families the run's method
    trains. A model trained with DDPM (SD 1.x/2.x, SD-XL) refuses the
    flow-matching options (`RunSettings.check_ddpm_options`).
    """
    from studio.interop import load_backbone as load_model
    from studio.models.presets import SD3
    from studio.trainers.run.run_phase import LOADING_MODEL, report_phase

    report_phase(LOADING_MODEL)
    precision = settings.precision
    with devices.scope():
        backbone = load_model(
            settings.model,
            weights=settings.weights,
            vocabulary=settings.vocabulary,
            dtype=backbone_policy(precision, frozen),
        )
    if backbone.family not in families:
        command = getattr(settings, "COMMAND", "Training")
        raise SettingsError(
            f"{command} is not supported yet for {backbone.family} models; generate with "
            f"it, or train a model of {list(families)}. "
            f"Received: --model {settings.model}"
        )
    if backbone.family != SD3:
        settings.check_ddpm_options()
    return backbone


def open_run_directory(settings, out, resume):
    """The `RunDirectory` at `out`, checked against `settings`.

    Raises:
        SettingsError: `out` is not given, it holds a run and `resume` is
            False, or `resume` changes a setting that defines the run.
        FileNotFoundError: `resume` of a folder that holds no run.
    """
    from studio.trainers.run.run_directory import RunDirectory

    if not out:
        raise SettingsError("A run needs its folder (--out). Received: no --out")
    run_directory = RunDirectory(os.fspath(out))
    if resume:
        settings.check_resume(run_directory.read_config())
    elif run_directory.exists():
        raise SettingsError(
            f"{out} already holds a training run. Add --resume to continue it, or "
            f"choose another --out. Received: --out {out}"
        )
    return run_directory


@contextlib.contextmanager
def removed_on_user_error(out, resume):
    """Removes what a new run wrote into `out` when it fails by a user error before a checkpoint.

    A run that cannot write its folder (read-only, full, ...) or is refused
    leaves nothing behind: the folder itself when the run made it, else
    the files it added. A resumed run, or one with a checkpoint to resume
    from, is left as it is; so is a run stopped by a non-finite loss, whose
    folder tells what happened.
    """
    from studio.trainers.run.non_finite_loss_error import NonFiniteLossError
    from studio.trainers.run.run_directory import RunDirectory

    path = os.fspath(out)
    before = None if resume or not os.path.isdir(path) else set(os.listdir(path))
    try:
        yield
    except Exception as error:
        checkpoints = RunDirectory(path).checkpoint_folders()
        keep = (resume or isinstance(error, NonFiniteLossError) or not is_user_error(error)
                or checkpoints)
        if not keep:
            _remove_new_entries(path, before)
        if is_output_location_error(error):
            raise OutputLocationError(_write_failure(path, error, checkpoints)) from error
        raise


def _write_failure(path, error, checkpoints):
    """What a run that could not write its folder says: where, why, and what is kept."""
    where = f" ({os.fsdecode(error.filename)})" if error.filename else ""
    message = f"cannot write the run folder {path}{where}: {os_error_reason(error)}."
    if checkpoints:
        step, _ = checkpoints[-1]
        return (f"{message} Its checkpoints are kept: once that is fixed, "
                f"`--resume --out {path}` continues from step {step}.")
    return f"{message} Nothing of the run was kept."


def _remove_new_entries(path, before):
    if before is None:
        shutil.rmtree(path, ignore_errors=True)
        return
    for name in set(os.listdir(path)) - before if os.path.isdir(path) else ():
        entry = os.path.join(path, name)
        if os.path.isdir(entry) and not os.path.islink(entry):
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(entry)


@contextlib.contextmanager
def locked_run_directory(settings, out, resume):
    """`open_run_directory`, locked for this process while the `with` block runs.

    Raises:
        RunLockedError: another process trains in `out`.
        OutputLocationError: the folder cannot be made or written (nothing
            of it is left behind).
        SettingsError, FileNotFoundError: see `open_run_directory`.
    """
    from studio.trainers.run.run_directory import RunDirectory

    if not out:
        raise SettingsError("A run needs its folder (--out). Received: no --out")
    path = os.fspath(out)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(RunDirectory(path).lock())
        except OSError as error:
            if is_output_location_error(error):
                raise OutputLocationError(_write_failure(path, error, [])) from error
            raise
        yield open_run_directory(settings, out, resume)


def record_settings(run_directory, settings, resume):
    """Writes the run's `config.json`: a new run's folder is made first.

    A resumed run's changed settings are added to its `history`
    (`TrainingSettings.resumed_config`).
    """
    if resume:
        steps = run_directory.checkpoints().steps()
        config = settings.resumed_config(run_directory.read_config(), steps[-1] if steps else 0)
        run_directory.write_config(config)
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
    from studio.trainers.run.callbacks.phase_callback import PhaseCallback
    from studio.trainers.run.run_phase import COMPILING, SAMPLING, TRAINING, report_phase
    from studio.trainers.run.training_run import TrainingRun

    prompts = settings.sample_prompt_list()

    def sampler():
        report_phase(SAMPLING)
        images = trainer.sample_images(prompts, seed=settings.seed,
                                       num_steps=settings.sample_steps)
        report_phase(TRAINING)
        return images

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
    report_phase(COMPILING)
    return training.fit(batches, resume=resume, callbacks=[PhaseCallback()])


def latent_cache(backbone, settings):
    """The run's `LatentCache` of `backbone`'s VAE encoder, or None (`latent_variants` 0)."""
    if not settings.latent_variants:
        return None
    from studio.datasets import LatentCache, weights_id
    from studio.trainers.run.run_phase import CACHING_LATENTS, phase_counter

    return LatentCache(
        backbone.vae_encoder,
        model_id=weights_id(backbone.vae_encoder),
        cache_dir=settings.cache_dir,
        num_variants=settings.latent_variants,
        on_progress=phase_counter(CACHING_LATENTS),
        downsampling=backbone.latent_downsampling,
    )
