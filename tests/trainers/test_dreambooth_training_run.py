"""DreamBoothTrainer inside TrainingRun: resume, run folder, samples, non-finite losses (any backend)."""

import os

import keras
import numpy as np
import pytest

from studio.images import read_parameters
from studio.models import StableDiffusionBackbone
from studio.pipelines import TextToImagePipeline
from studio.trainers.dreambooth.dreambooth_trainer import LORA_FILE, DreamBoothTrainer
from studio.lora.lora_weights import LoRAWeights
from studio.trainers.run.non_finite_loss_error import NonFiniteLossError
from studio.trainers.run.run_directory import RunDirectory
from studio.trainers.run.training_run import TrainingRun
from studio.trainers.warmup_schedule import WarmupSchedule

INSTANCE_PROMPT = "a photo of sks dog"
CLASS_PROMPT = "a photo of a dog"
LATENT_SHAPE = (8, 8, 4)
TOTAL_STEPS = 4
STOP_STEP = 2
ACCUMULATION = 2
LEARNING_RATE = 1e-2
WARMUP_STEPS = 2
LORA_RANK = 2


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def moment_batches(tokenizer, count, seed=0, nan_from=None):
    """`count` batches of one subject and one class example; NaN moments from batch `nan_from`."""
    rng = np.random.default_rng(seed)
    token_ids = np.asarray(tokenizer([INSTANCE_PROMPT, CLASS_PROMPT]))
    batches = []
    for index in range(count):
        mean = rng.standard_normal((2, *LATENT_SHAPE))
        if nan_from is not None and index >= nan_from:
            mean = mean * np.nan
        moments = np.concatenate([mean, np.full_like(mean, -2.0)], -1).astype("float32")
        batches.append(
            {"moments": moments, "token_ids": token_ids, "is_class_image": np.array([False, True])}
        )
    return batches


def lora_trainer(options, precision=None):
    backbone = StableDiffusionBackbone.from_preset("tiny", seed=0, dtype=precision)
    trainer = DreamBoothTrainer(
        backbone, lora_rank=LORA_RANK, prior_loss_weight=0.5, min_snr_gamma=5.0,
        offset_noise=0.05, seed=11,
    )
    schedule = WarmupSchedule(
        LEARNING_RATE, warmup_steps=WARMUP_STEPS, gradient_accumulation_steps=ACCUMULATION
    )
    optimizer = keras.optimizers.AdamW(schedule, gradient_accumulation_steps=ACCUMULATION)
    trainer.compile(optimizer=optimizer, **options)
    return trainer


def dreambooth_run(options, path, steps, resume=False, sample_every=None):
    trainer = lora_trainer(options)
    run = RunDirectory(path)
    if not run.exists():
        run.create({"instance_prompt": INSTANCE_PROMPT})

    # Uncompiled: tracing a compiled sampler costs more than these two images.
    pipeline = TextToImagePipeline(trainer.backbone, jit_compile=False)

    def sampler():
        return pipeline([INSTANCE_PROMPT], seed=3, num_steps=2)

    training = TrainingRun(
        trainer, run, steps, save_every=STOP_STEP, log_every=1,
        sampler=sampler if sample_every else None, sample_every=sample_every,
    )
    batches = moment_batches(trainer.backbone.tokenizer, TOTAL_STEPS * ACCUMULATION, seed=5)
    return trainer, training.fit(batches, resume=resume)


@pytest.fixture(scope="module")
def runs(quick_compile_options, tmp_path_factory, eager_tensorflow_functions):
    root = tmp_path_factory.mktemp("dreambooth-runs")
    # Eager under TensorFlow: the progress sampler's loop too (its graph is traced
    # per call of a new pipeline; the compiled loop has its own tests).
    with eager_tensorflow_functions():
        whole = dreambooth_run(
            quick_compile_options, root / "whole", TOTAL_STEPS, sample_every=STOP_STEP
        )
        dreambooth_run(quick_compile_options, root / "resumed", STOP_STEP)
        resumed = dreambooth_run(quick_compile_options, root / "resumed", TOTAL_STEPS, resume=True)
    return root, whole, resumed


def test_resumed_run_equals_uninterrupted_run(runs):
    _, (whole, whole_summary), (resumed, resumed_summary) = runs
    assert resumed_summary["resumed_from_step"] == STOP_STEP
    assert whole_summary["steps"] == resumed_summary["steps"] == TOTAL_STEPS
    assert len(whole.trainable_variables) == len(resumed.trainable_variables) > 0
    for a, b in zip(whole.trainable_variables, resumed.trainable_variables):
        assert np.abs(numpy(a)).max() > 0
        np.testing.assert_allclose(numpy(b), numpy(a), rtol=1e-5, atol=1e-7)
    inner = [t.optimizer.inner_optimizer if hasattr(t.optimizer, "inner_optimizer")
             else t.optimizer for t in (whole, resumed)]
    assert int(numpy(inner[0].iterations)) == int(numpy(inner[1].iterations))
    assert resumed_summary["final_loss"] == pytest.approx(whole_summary["final_loss"], rel=1e-4)


def test_run_folder_holds_lora_checkpoints_samples_and_logs(runs):
    root, (whole, summary), _ = runs
    folder = root / "whole"
    assert summary["status"] == "completed"
    final = LoRAWeights.load(folder / LORA_FILE)
    assert final.metadata["ss_steps"] == str(TOTAL_STEPS)
    for step in (STOP_STEP, TOTAL_STEPS):
        checkpoint = folder / "checkpoints" / f"step-{step:06d}"
        assert (checkpoint / LORA_FILE).is_file()
        assert (folder / "samples" / f"step-{step:06d}-0.png").is_file()
    parameters = read_parameters(folder / "samples" / f"step-{TOTAL_STEPS:06d}-0.png")
    assert (parameters.prompt, parameters.seed, parameters.steps) == (INSTANCE_PROMPT, 3, 2)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "logs"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert {"loss", "loss/instance", "loss/prior", "learning_rate"} <= set(events.Tags()["scalars"])
    assert "samples/0" in events.Tags()["images"]
    last = {tag: events.Scalars(tag)[-1].value for tag in ("loss", "loss/instance", "loss/prior")}
    assert last["loss"] == pytest.approx(last["loss/instance"] + 0.5 * last["loss/prior"], rel=1e-5)


def test_repeated_non_finite_losses_stop_and_keep_the_last_good_checkpoint(
    quick_compile_options, tmp_path
):
    trainer = lora_trainer(quick_compile_options)
    run = RunDirectory(tmp_path)
    run.create({})
    training = TrainingRun(trainer, run, TOTAL_STEPS, save_every=1)
    good_batches = STOP_STEP * ACCUMULATION
    batches = moment_batches(trainer.backbone.tokenizer, 8, nan_from=good_batches)
    with pytest.raises(NonFiniteLossError, match=f"at step {STOP_STEP + 1}") as raised:
        training.fit(batches)
    assert raised.value.checkpoint == training.checkpoint.folder(STOP_STEP)
    saved = LoRAWeights.load(os.path.join(training.checkpoint.folder(STOP_STEP), LORA_FILE))
    assert all(np.all(np.isfinite(up)) for _, up, _ in saved.modules.values())
    assert not os.path.exists(tmp_path / LORA_FILE)


def _jax_on_cpu():
    if keras.config.backend() != "jax":
        return False
    import jax

    return jax.devices()[0].platform == "cpu"


@pytest.mark.skipif(
    _jax_on_cpu(),
    reason="loss scaling is for mixed_float16, and XLA:CPU cannot compile float16 "
    "matmuls with float32 accumulation (GPUs can)",
)
def test_loss_scaling_skips_a_non_finite_step(quick_compile_options):
    trainer = lora_trainer(quick_compile_options, precision="mixed_float16")
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert trainer.precision == "mixed_float16"
    assert all(v.dtype == "float32" for v in trainer.trainable_variables)
    tokenizer = trainer.backbone.tokenizer
    before = [numpy(v).copy() for v in trainer.trainable_variables]
    scale = trainer.optimizer.initial_scale
    # One micro-batch short of an update would not apply anything; give a
    # whole accumulation of NaN batches.
    nan_batches = moment_batches(tokenizer, ACCUMULATION, nan_from=0)
    trainer.fit(((b,) for b in nan_batches), steps_per_epoch=ACCUMULATION, verbose=0)
    getattr(trainer, "jax_state_sync", lambda: None)()
    for old, variable in zip(before, trainer.trainable_variables):
        np.testing.assert_array_equal(numpy(variable), old)
    assert float(numpy(trainer.optimizer.dynamic_scale)) < scale
