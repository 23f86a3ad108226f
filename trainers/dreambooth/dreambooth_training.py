"""`train_dreambooth(settings, out)`: a DreamBooth run, from settings to LoRA file or model.

`build_dreambooth(settings)` gives the compiled trainer and its batches,
for callers that drive the training themselves (the evaluation).
"""

import os

from studio.errors import InvalidInputError
from studio.trainers.run_setup import (
    DREAMBOOTH_FAMILIES,
    fit_run,
    latent_cache,
    load_backbone,
    locked_run_directory,
    record_settings,
    removed_on_user_error,
    set_up_devices,
)
from studio.trainers.run.run_phase import CHECKING_IMAGES, CLASS_IMAGES, phase_counter, report_phase
from studio.trainers.settings.dreambooth_settings import CLASS_IMAGES_FOLDER

ADAMW_WEIGHT_DECAY = 1e-2
SGD_MOMENTUM = 0.9
# The whole fine-tuned model (full mode), in the run folder.
MODEL_FOLDER = "model"


def train_dreambooth(settings, out, resume=False):
    """Fine-tunes `settings.model` on the subject in the run folder `out`; returns the summary.

    Class images (with `class_prompt`) are generated first by the model
    before fine-tuning, into `class_data` (default: `out/class_images`). A
    LoRA run writes `lora.safetensors` (kohya names), a pivotal-tuning run
    (`settings.token`) also `embedding.safetensors`; a full run
    `unet.weights.h5` and the whole model in `out/model`.

    Args:
        settings: a `DreamBoothSettings`. To resume, pass the run's own
            (`read_run_settings(out)`), changed only in its `resumable`
            fields.
        out: the run folder.
        resume: continue the run in `out` from its last checkpoint.

    Returns:
        The run's summary dict (as in `summary.json`).

    Raises:
        InvalidInputError: the settings are invalid, `out` already holds a run
            (without `resume`), or `resume` changes what defines the run.
        FileNotFoundError: `resume` of a folder that holds no run.
        NonFiniteLossError: the run stopped on non-finite losses or
            diverged weights; its last good checkpoint is kept.
        RunLockedError: another process trains in `out`.
    """
    import dataclasses

    import keras

    settings.validate()
    devices = set_up_devices(settings)
    if settings.class_prompt and not settings.class_data:
        settings = dataclasses.replace(
            settings, class_data=os.path.join(os.fspath(out), CLASS_IMAGES_FOLDER)
        )
    # One process at a time trains in `out` (RunLockedError for a second); a new run
    # that fails by a user error before a checkpoint leaves nothing behind.
    with locked_run_directory(settings, out, resume) as run_directory, \
            removed_on_user_error(out, resume):
        # Presets without weights (tiny) start from seeded random weights, so
        # that a resumed run has the same frozen model.
        keras.utils.set_random_seed(settings.seed)
        trainer, batches = build_dreambooth(settings, devices)
        record_settings(run_directory, settings, resume)
        summary = fit_run(trainer, run_directory, settings, batches, resume)
        if not trainer.is_lora:
            trainer.save_backbone(run_directory.file(MODEL_FOLDER))
        return summary


def build_dreambooth(settings, devices=None):
    """The compiled trainer and its training batches (a `tf.data.Dataset`) for `settings`.

    Generates the missing class images first, with the model before
    fine-tuning. The backbone, trainer and optimizer are built in the scope
    of `devices` (a set-up `DataParallelDevices`; None: one device); the
    class images outside it (under TensorFlow, on one device).

    Args:
        settings: a `DreamBoothSettings`, with `class_data` set when it has
            a `class_prompt`.
        devices: the run's `DataParallelDevices`, set up; None: one device.
    """
    from studio.datasets import ConceptDataset, DreamBoothDataset
    from studio.trainers.distributed.data_parallel_devices import DataParallelDevices
    from studio.trainers.dreambooth.dreambooth_text_embeddings import (
        attach_text_embeddings,
        precompute_text_embeddings,
    )
    from studio.trainers.dreambooth import sd3_dreambooth_training as sd3

    from studio.models import family_of
    from studio.models.presets import SD3

    devices = devices or DataParallelDevices()
    if family_of(settings.model) == SD3:
        # Before loading: what SD3 cannot do is refused at once.
        sd3.check_sd3_settings(settings)
    backbone = load_dreambooth_backbone(settings, devices)
    is_sd3 = backbone.family == SD3
    resolution = settings.training_resolution(backbone)
    prior_preservation = bool(settings.class_prompt)
    if prior_preservation:
        from studio.pipelines import TextToImagePipeline
        from studio.trainers.dreambooth.dreambooth_class_images import generate_class_images

        generate_class_images(
            TextToImagePipeline(backbone),
            settings.class_data,
            settings.class_prompt,
            settings.num_class_images,
            seed=settings.seed,
            num_steps=settings.class_image_steps,
            guidance_scale=settings.class_image_guidance,
            resolution=resolution,
            on_progress=phase_counter(CLASS_IMAGES),
        )

    trainer = build_dreambooth_trainer(settings, backbone, devices)

    cache = latent_cache(backbone, settings)
    report_phase(CHECKING_IMAGES)

    def concept(folder, prompt):
        # The whole prompt is the "placeholder" of a one-template set, so a
        # caption file's `{}` stands for it.
        return ConceptDataset(
            settings.image_folder(folder, resolution),
            backbone.tokenizer,
            placeholder=prompt,
            templates=["{}"],
            latent_cache=cache,
        )

    instances = concept(settings.data, settings.instance_prompt)
    datasets = [instances]
    if prior_preservation:
        datasets.append(concept(settings.class_data, settings.class_prompt))
    table = contexts = None
    # Pivotal tuning's prompts change as the token's vectors train.
    if not settings.train_text_encoder and not settings.is_pivotal:
        import numpy as np

        from studio.trainers.dreambooth.dreambooth_trainer import CACHED_CONDITIONING_KEYS

        def text_outputs(ids):
            # SD: the context; SD-XL: also the pooled text embedding (its size
            # ids are the step's, from the latents).
            outputs = backbone.encode_text(ids)
            if "text_embeds" not in outputs:
                return outputs["context"]
            return {key: outputs[key] for key in CACHED_CONDITIONING_KEYS}

        token_ids = np.concatenate([d.token_ids for d in datasets])
        if is_sd3:
            table, contexts = sd3.sd3_text_embeddings(backbone, token_ids)
        else:
            table, contexts = precompute_text_embeddings(text_outputs, token_ids)

    def build_batches():
        if prior_preservation:
            batches = DreamBoothDataset(*datasets).build(
                batch_size=settings.batch_size, seed=settings.seed
            )
        else:
            batches = instances.build(batch_size=settings.batch_size, seed=settings.seed)
        if table is not None:
            batches = attach_text_embeddings(batches, table, contexts)
        if prior_preservation and devices.is_data_parallel:
            batches = batches.map(float_class_mask)
        return batches

    # Without the cache the pipeline augments with keras_cv layers.
    batches = devices.dataset(build_batches, rebuildable=cache is not None)
    return trainer, batches


def load_dreambooth_backbone(settings, devices):
    """The run's backbone, in the dtype policy of its mode, built in `devices`' scope.

    LoRA (and pivotal tuning, which is LoRA with a token) trains float32
    matrices of its own (`Dense.enable_lora`) and no weight of the
    backbone, so under mixed precision the backbone is stored in half
    precision (`backbone_policy(precision, frozen=True)`), as diffusers'
    LoRA scripts keep their frozen networks in `weight_dtype`; the run
    still computes, and scales its loss, as its mixed `precision` says.
    Full fine-tuning keeps the mixed policy's float32 weights, which the
    optimizer updates.

    Raises:
        SettingsError: the model's family has no DreamBooth, an SD3 model
            with settings SD3 does not have (`check_sd3_settings`), or a
            DDPM model with SD3's options (`run_setup.load_backbone`).
    """
    from studio.models.presets import SD3
    from studio.trainers.dreambooth import sd3_dreambooth_training as sd3

    backbone = load_backbone(settings, devices, frozen=settings.is_lora,
                             families=DREAMBOOTH_FAMILIES)
    if backbone.family == SD3:
        sd3.check_sd3_settings(settings)
    return backbone


def build_dreambooth_trainer(settings, backbone, devices):
    """The compiled trainer of `settings` on `backbone`, in `devices`' scope.

    `SD3LoRATrainer` for an SD3 backbone; otherwise `DreamBoothTrainer`, or
    `PivotalTuningTrainer` with `settings.token`.
    """
    from studio.models.presets import SD3
    from studio.trainers.dreambooth import sd3_dreambooth_training as sd3

    if backbone.family == SD3:
        return sd3.build_sd3_trainer(settings, backbone, devices)
    return _build_trainer(settings, backbone, devices)


def _build_trainer(settings, backbone, devices):
    """The compiled `DreamBoothTrainer` of `settings` (SD 1.x / 2.x, SD-XL), in `devices`' scope.

    With `settings.token`, a `PivotalTuningTrainer` (the token's vectors and the LoRA).
    """
    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer
    from studio.trainers.dreambooth.pivotal_tuning_trainer import PivotalTuningTrainer

    trainer_class, pivotal = DreamBoothTrainer, {}
    if settings.is_pivotal:
        trainer_class = PivotalTuningTrainer
        pivotal = dict(placeholder_token=settings.token, initializer_word=settings.init_word,
                       embedding_steps=settings.embedding_steps())
    with devices.scope():
        trainer = trainer_class(
            backbone,
            **pivotal,
            prior_loss_weight=settings.prior_loss_weight,
            lora_rank=settings.lora_rank,
            lora_alpha=settings.lora_alpha,
            lora_feed_forward=bool(settings.lora_feed_forward),
            train_text_encoder=bool(settings.train_text_encoder),
            remat=bool(settings.remat),
            min_snr_gamma=settings.min_snr_gamma,
            offset_noise=settings.offset_noise,
            seed=settings.seed,
        )
        trainer.compile(optimizer=build_optimizer(settings), jit_compile=devices.jit_compile(True))
    return trainer


def float_class_mask(batch):
    """`batch` with its `is_class_image` as 0/1 float32 (the trainer takes either).

    Under `tf.distribute` Keras averages a first batch over the replicas to
    build the model, and TensorFlow cannot add bools.
    """
    import tensorflow as tf

    return dict(batch, is_class_image=tf.cast(batch["is_class_image"], tf.float32))


def build_optimizer(settings):
    """The optimizer of `settings`, with its warm-up schedule and gradient accumulation."""
    import keras

    from studio.trainers.warmup_schedule import WarmupSchedule

    accumulation = settings.grad_accum
    schedule = WarmupSchedule(
        settings.lr,
        warmup_steps=settings.warmup_steps,
        decay=settings.lr_decay,
        decay_steps=settings.steps if settings.lr_decay == "cosine" else None,
        gradient_accumulation_steps=accumulation,
    )
    options = {"gradient_accumulation_steps": accumulation if accumulation > 1 else None}
    optimizers = {
        "adamw": lambda: keras.optimizers.AdamW(
            schedule, weight_decay=ADAMW_WEIGHT_DECAY, **options),
        "adam": lambda: keras.optimizers.Adam(schedule, **options),
        "adafactor": lambda: keras.optimizers.Adafactor(schedule, **options),
        "lion": lambda: keras.optimizers.Lion(schedule, **options),
        "sgd": lambda: keras.optimizers.SGD(schedule, momentum=SGD_MOMENTUM, **options),
    }
    if settings.optimizer not in optimizers:
        raise InvalidInputError(
            f"--optimizer must be one of {tuple(optimizers)}. Received: {settings.optimizer!r}"
        )
    return optimizers[settings.optimizer]()
