"""`train_textual_inversion(settings, out)`: a textual-inversion run, from settings to embedding.

`build_textual_inversion(settings)` gives the compiled trainer and its
batches, for callers that drive the training themselves (the demo).
"""

from studio.trainers.run.run_phase import CHECKING_IMAGES, report_phase
from studio.trainers.run_setup import (
    fit_run,
    latent_cache,
    load_backbone,
    locked_run_directory,
    record_settings,
    removed_on_user_error,
    set_up_devices,
)


def train_textual_inversion(settings, out, resume=False):
    """Learns `settings.token`'s vectors in the run folder `out`; returns the run's summary.

    The folder gets `config.json`, checkpoints, TensorBoard logs, sample
    images, `embedding.safetensors` and `summary.json`.

    Args:
        settings: a `TextualInversionSettings`. To resume, pass the run's
            own (`read_run_settings(out)`), changed only in its
            `resumable` fields.
        out: the run folder.
        resume: continue the run in `out` from its last checkpoint.

    Returns:
        The run's summary dict (as in `summary.json`).

    Raises:
        InvalidInputError: the settings are invalid, `out` already holds a run
            (without `resume`), or `resume` changes what defines the run.
        FileNotFoundError: `resume` of a folder that holds no run.
        NonFiniteLossError: the run stopped on non-finite losses; its last
            good checkpoint is kept.
    """
    settings.validate()
    devices = set_up_devices(settings)
    # One process at a time trains in `out` (RunLockedError for a second); a new run
    # that fails by a user error before a checkpoint leaves nothing behind.
    with locked_run_directory(settings, out, resume) as run_directory, \
            removed_on_user_error(out, resume):
        # Presets without weights (tiny) get the same seeded random weights in
        # every process (`from_preset`), so a resumed run has the same model.
        trainer, batches = build_textual_inversion(settings, devices)
        record_settings(run_directory, settings, resume)
        return fit_run(trainer, run_directory, settings, batches, resume)


def build_textual_inversion(settings, devices=None):
    """The compiled trainer and its training batches for `settings` (a `TextualInversionSettings`).

    The backbone, trainer and optimizer are built in the scope of `devices`
    (a set-up `DataParallelDevices`; None: one device).
    """
    import keras

    from studio.datasets import ConceptDataset
    from studio.models import family_of
    from studio.models.presets import SD3, SDXL
    from studio.trainers.distributed.data_parallel_devices import DataParallelDevices
    from studio.trainers.textual_inversion.sd3_textual_inversion_training import (
        check_sd3_settings,
    )
    from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer
    from studio.trainers.warmup_schedule import WarmupSchedule

    devices = devices or DataParallelDevices()
    if family_of(settings.model) == SD3:
        # Before loading: what SD3 cannot do is refused at once.
        check_sd3_settings(settings)
    backbone = load_backbone(settings, devices, frozen=True)
    trainer_class, objective_options = TextualInversionTrainer, None
    if backbone.family == SDXL:
        # Both text encoders' rows, one `{clip_l, clip_g}` embedding file.
        from studio.trainers.textual_inversion.sdxl_textual_inversion_trainer import (
            SDXLTextualInversionTrainer as trainer_class,
        )
    elif backbone.family == SD3:
        # CLIP-L and CLIP-G rows with flow matching; the same file layout.
        check_sd3_settings(settings, backbone)
        from studio.trainers.textual_inversion.sd3_textual_inversion_trainer import (
            SD3TextualInversionTrainer as trainer_class,
        )

        objective_options = settings.flow_matching_options()
    with devices.scope():
        trainer = trainer_class(
            backbone,
            settings.token,
            settings.init_word,
            num_vectors=settings.num_vectors,
            min_snr_gamma=settings.min_snr_gamma,
            offset_noise=settings.offset_noise,
            norm_regularization=settings.norm_regularization,
            seed=settings.seed,
            objective_options=objective_options,
        )
        accumulation = settings.grad_accum
        schedule = WarmupSchedule(
            settings.lr,
            warmup_steps=settings.warmup_steps,
            gradient_accumulation_steps=accumulation,
        )
        optimizer = keras.optimizers.Adam(
            schedule, gradient_accumulation_steps=accumulation if accumulation > 1 else None
        )
        # "auto": XLA with a GPU and jit under JAX; on CPU-only TensorFlow a
        # graph without XLA, as XLA:CPU's convolutions are slower than oneDNN's.
        jit_compile = "auto" if settings.jit else False
        trainer.compile(optimizer=optimizer, jit_compile=devices.jit_compile(jit_compile))

    report_phase(CHECKING_IMAGES)
    folder = settings.image_folder(settings.data, settings.training_resolution(backbone))
    cache = latent_cache(backbone, settings)
    dataset = ConceptDataset(
        folder, backbone.tokenizer, settings.token,
        templates=settings.property, latent_cache=cache,
    )
    batches = devices.dataset(
        lambda: dataset.build(batch_size=settings.batch_size, seed=settings.seed),
        # Without the cache the pipeline augments with keras_cv layers.
        rebuildable=cache is not None,
    )
    return trainer, batches
