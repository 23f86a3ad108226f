"""Tests of TrainingRun: resume, gradient accumulation, logs, samples, non-finite losses."""

import json
import os

import keras
import numpy as np
import pytest

from studio.trainers.run.non_finite_loss_error import NonFiniteLossError
from studio.trainers.run.run_directory import RunDirectory
from studio.trainers.run.callbacks.step_callback import StepCallback
from studio.trainers.textual_inversion.textual_inversion_trainer import EMBEDDING_FILE, TextualInversionTrainer
from studio.trainers.run.training_run import STATUS_NON_FINITE, TrainingRun
from studio.trainers.warmup_schedule import WarmupSchedule

TOTAL_STEPS = 3
STOP_STEP = 2
ACCUMULATION = 2
LEARNING_RATE = 1e-2
WARMUP_STEPS = 4
TOKEN = "<resumed>"


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


class VectorRecorder(StepCallback):
    """Records the trainer's vectors after every batch."""

    def __init__(self):
        super().__init__()
        self.after_batch = []

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        self.sync_model_state()
        self.after_batch.append(numpy(self.model.new_vectors).copy())


def ti_run(backbone, make_batches, options, path, steps, resume=False, callbacks=None):
    trainer = TextualInversionTrainer(backbone, TOKEN, "cat", num_vectors=2, seed=4)
    schedule = WarmupSchedule(
        LEARNING_RATE, warmup_steps=WARMUP_STEPS, gradient_accumulation_steps=ACCUMULATION
    )
    optimizer = keras.optimizers.Adam(schedule, gradient_accumulation_steps=ACCUMULATION)
    trainer.compile(optimizer=optimizer, **options)
    run = RunDirectory(path)
    if not run.exists():
        run.create({"token": TOKEN})
    training = TrainingRun(trainer, run, steps, save_every=1, log_every=1)
    batches = make_batches(backbone.tokenizer, TOKEN, seed=9)
    summary = training.fit(batches, resume=resume, callbacks=callbacks)
    return trainer, summary


@pytest.fixture(scope="module")
def runs(tiny_backbone, make_batches, quick_compile_options, tmp_path_factory):
    """An uninterrupted run, and one stopped at STOP_STEP and resumed."""
    root = tmp_path_factory.mktemp("runs")
    recorder = VectorRecorder()
    options = quick_compile_options
    whole, whole_summary = ti_run(
        tiny_backbone, make_batches, options, root / "whole", TOTAL_STEPS, callbacks=[recorder]
    )
    initial = TextualInversionTrainer(tiny_backbone, TOKEN, "cat", num_vectors=2).learned_vectors()
    ti_run(tiny_backbone, make_batches, options, root / "resumed", STOP_STEP)
    resumed, resumed_summary = ti_run(
        tiny_backbone, make_batches, options, root / "resumed", TOTAL_STEPS, resume=True
    )
    return {
        "root": root,
        "whole": (whole, whole_summary),
        "resumed": (resumed, resumed_summary),
        "recorder": recorder,
        "initial": initial[TOKEN],
    }


def test_resumed_run_equals_uninterrupted_run(runs):
    whole, whole_summary = runs["whole"]
    resumed, resumed_summary = runs["resumed"]
    np.testing.assert_allclose(
        numpy(resumed.new_vectors), numpy(whole.new_vectors), rtol=1e-6, atol=1e-7
    )
    assert resumed_summary["final_loss"] == pytest.approx(whole_summary["final_loss"], rel=1e-5)
    assert resumed_summary["steps"] == whole_summary["steps"] == TOTAL_STEPS
    assert resumed_summary["resumed_from_step"] == STOP_STEP
    assert whole_summary["resumed_from_step"] is None
    # Both optimizers took the same number of updates.
    assert int(numpy(resumed.optimizer.iterations)) == int(numpy(whole.optimizer.iterations))


def test_gradient_accumulation_updates_every_n_batches(runs):
    after = runs["recorder"].after_batch
    assert len(after) == TOTAL_STEPS * ACCUMULATION
    np.testing.assert_array_equal(after[0], runs["initial"])
    for batch in range(1, len(after)):
        changed = not np.array_equal(after[batch], after[batch - 1])
        assert changed == (batch % ACCUMULATION == ACCUMULATION - 1), batch


def test_run_directory_holds_checkpoints_results_and_summary(runs):
    from studio.embeddings import load_embedding

    whole, summary = runs["whole"]
    path = runs["root"] / "whole"
    steps = ["step-000001", "step-000002", "step-000003"]
    assert sorted(os.listdir(path / "checkpoints")) == steps
    for step in steps:
        assert sorted(os.listdir(path / "checkpoints" / step)) == [
            "checkpoint.json", EMBEDDING_FILE, "training_state.npz",
        ]
    final = load_embedding(path / EMBEDDING_FILE)
    np.testing.assert_array_equal(final.vectors[TOKEN], whole.learned_vectors()[TOKEN])
    assert final.steps == TOTAL_STEPS
    halfway = load_embedding(path / "checkpoints" / "step-000002" / EMBEDDING_FILE)
    assert halfway.steps == STOP_STEP
    assert not np.array_equal(halfway.vectors[TOKEN], final.vectors[TOKEN])
    assert RunDirectory(path).read_summary() == summary
    assert summary["status"] == "completed"
    assert summary["precision"] == "float32"
    assert summary["gradient_accumulation_steps"] == ACCUMULATION
    assert summary["backend"] == keras.config.backend()
    assert summary["device"].startswith("cpu")
    assert np.isfinite(summary["final_loss"]) and summary["seconds"] > 0


def test_tensorboard_logs_loss_learning_rate_and_norms(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    whole = runs["whole"][0]
    events = EventAccumulator(str(runs["root"] / "whole" / "logs"), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"loss", "learning_rate", f"vector_norm/{TOKEN}", f"vector_norm/{TOKEN}_1"} <= set(tags)
    assert [e.step for e in events.Scalars("loss")] == list(range(1, TOTAL_STEPS + 1))
    # Logged after update k, the rate is that of update k + 1: (k + 1) / 4
    # of the rate during the 4-step warm-up, counted in updates although the
    # optimizer counts micro-batches.
    rates = [e.value for e in events.Scalars("learning_rate")]
    assert rates == pytest.approx([LEARNING_RATE * f for f in (0.5, 0.75, 1.0)])
    last_norm = events.Scalars(f"vector_norm/{TOKEN}")[-1].value
    assert last_norm == pytest.approx(whole.vector_norms()[TOKEN], rel=1e-5)


class Regressor(keras.Model):
    """The smallest trainer `TrainingRun` accepts: a Dense layer and a result file."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)

    def save_results(self, folder, step):
        np.save(os.path.join(folder, "kernel.npy"), numpy(self.dense.kernel))


def regression_batches(finite_steps):
    """(x, y) batches whose targets turn NaN after `finite_steps`."""
    x = np.ones((2, 3), "float32")
    step = 0
    while True:
        step += 1
        y = np.zeros((2, 1), "float32") + (np.nan if step > finite_steps else 0.0)
        yield x, y


def regression_run(path, optimizer, steps, **kwargs):
    model = Regressor()
    model.compile(optimizer=optimizer, loss="mse", jit_compile=False)
    run = RunDirectory(path)
    run.create({})
    return model, TrainingRun(model, run, steps, log_every=1, **kwargs)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    model, training = regression_run(tmp_path, keras.optimizers.SGD(0.1), 10, save_every=2)
    with pytest.raises(NonFiniteLossError, match="at step 4") as raised:
        training.fit(regression_batches(finite_steps=3))
    assert raised.value.checkpoint == training.checkpoint.folder(2)
    assert str(training.checkpoint.folder(2)) in str(raised.value)
    assert training.checkpoint.steps() == [2]
    kernel = np.load(os.path.join(training.checkpoint.folder(2), "kernel.npy"))
    assert np.all(np.isfinite(kernel))
    assert not os.path.exists(tmp_path / "kernel.npy")  # No final result from NaN weights.
    summary = RunDirectory(tmp_path).read_summary()
    assert summary["status"] == STATUS_NON_FINITE


def test_loss_scaling_tolerates_a_few_non_finite_steps(tmp_path):
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
    model, training = regression_run(
        tmp_path, optimizer, 10, save_every=2, max_non_finite_steps=3
    )
    with pytest.raises(NonFiniteLossError, match="at step 5: .* 3 batch"):
        training.fit(regression_batches(finite_steps=2))
    # Steps 3 and 4 were skipped, not applied: the step-4 state is good.
    assert training.checkpoint.steps() == [2, 4]
    assert np.all(np.isfinite(numpy(model.dense.kernel)))


def test_samples_are_saved_with_parameters_and_logged(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from studio.images import GenerationParameters, read_parameters
    from studio.pipelines import GeneratedImages

    calls = []

    def sampler():
        calls.append(1)
        images = np.full((2, 8, 8, 3), 40 * len(calls), np.uint8)
        parameters = [GenerationParameters(prompt=f"a <x> {i}", seed=i) for i in range(2)]
        return GeneratedImages(images, parameters)

    model, training = regression_run(
        tmp_path, keras.optimizers.SGD(0.1), 3, sampler=sampler, sample_every=2
    )
    training.fit(regression_batches(finite_steps=10))
    names = sorted(os.listdir(tmp_path / "samples"))
    assert names == ["step-000002-0.png", "step-000002-1.png",
                     "step-000003-0.png", "step-000003-1.png"]
    assert read_parameters(tmp_path / "samples" / "step-000003-1.png").prompt == "a <x> 1"
    events = EventAccumulator(str(tmp_path / "logs"), size_guidance={"images": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["samples/0", "samples/1"]
    assert [e.step for e in events.Images("samples/0")] == [2, 3]


def test_resume_without_checkpoint_starts_over_and_finished_runs_stay_finished(tmp_path):
    model, training = regression_run(tmp_path, keras.optimizers.SGD(0.1), 2)
    summary = training.fit(regression_batches(finite_steps=10), resume=True)
    assert summary["steps"] == 2 and summary["resumed_from_step"] is None
    kernel = numpy(model.dense.kernel).copy()
    again = training.fit(regression_batches(finite_steps=10), resume=True)
    assert again["steps"] == 2 and again["resumed_from_step"] == 2
    np.testing.assert_array_equal(numpy(model.dense.kernel), kernel)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "steps"),
        ({"save_every": 0}, "save_every"),
        ({"sample_every": 5}, "sampler"),
    ],
)
def test_rejects_bad_arguments(tmp_path, kwargs, message):
    model = Regressor()
    kwargs = {"steps": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        TrainingRun(model, tmp_path, **kwargs)


# Issue 23: diverged runs, strict summaries, progress after a kill, the last TensorBoard step.


def all_checkpoint_values(training):
    values = []
    for step in training.checkpoint.steps():
        with np.load(os.path.join(training.checkpoint.folder(step), "training_state.npz")) as state:
            values.extend(state[name] for name in state.files)
    return values


def strict_json(path):
    """The file read as JSON.parse would: NaN and Infinity are errors."""

    def reject(constant):
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    with open(path, encoding="utf-8") as file:
        return json.load(file, parse_constant=reject)


def test_a_loss_scaled_run_whose_weights_overflow_float16_stops_without_a_bad_checkpoint(tmp_path):
    # Item 9: under mixed_float16 a huge learning rate puts the float32
    # weights beyond float16's range; every later loss is NaN and the loss
    # scale skips those steps, so the weights stay finite in float32. No
    # checkpoint of that state may be written or called good.
    model = Regressor(dtype="mixed_float16")
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(1e38))
    model.compile(optimizer=optimizer, loss="mse", jit_compile=False)
    run = RunDirectory(tmp_path)
    run.create({})
    training = TrainingRun(model, run, 20, save_every=2, log_every=1)
    with pytest.raises(NonFiniteLossError) as raised:
        training.fit(regression_batches(finite_steps=100))
    for value in all_checkpoint_values(training):
        if value.dtype.kind == "f":
            assert np.all(np.isfinite(value))
    for step in training.checkpoint.steps():
        kernel = np.load(os.path.join(training.checkpoint.folder(step), "kernel.npy"))
        assert np.all(np.abs(kernel) <= 65504)
    assert raised.value.checkpoint is None  # The first step already diverged.
    assert "No good checkpoint" in str(raised.value)
    assert raised.value.step <= 2  # Stopped at the first check, not 10 skipped steps later.
    assert strict_json(run.summary_path)["status"] == STATUS_NON_FINITE


def test_a_run_whose_weights_leave_float16_range_is_not_completed(tmp_path):
    # Item 11: one step at an absurd learning rate leaves the weights finite
    # in float32 with a finite loss, but beyond what a float16 reader loads.
    model, training = regression_run(tmp_path, keras.optimizers.SGD(1e37), 1)
    with pytest.raises(NonFiniteLossError, match="at step 1: the training state diverged"):
        training.fit(regression_batches(finite_steps=10))
    assert not os.path.exists(tmp_path / "kernel.npy")  # No result.
    assert training.checkpoint.steps() == []
    summary = strict_json(RunDirectory(tmp_path).summary_path)
    assert summary["status"] == STATUS_NON_FINITE


def test_a_good_run_keeps_its_weights_within_float16_and_completes(tmp_path):
    model, training = regression_run(tmp_path, keras.optimizers.SGD(0.1), 2)
    summary = training.fit(regression_batches(finite_steps=10))
    assert summary["status"] == "completed" and os.path.exists(tmp_path / "kernel.npy")


class ManyDense(keras.Model):
    """112 variables, as a DreamBooth LoRA has: warnings must not list them all."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.layers_ = [keras.layers.Dense(1) for _ in range(56)]

    def call(self, x):
        return sum(layer(x) for layer in self.layers_)

    def save_results(self, folder, step):
        pass


def test_the_diverged_state_warning_names_a_few_variables_and_counts_the_rest(tmp_path, caplog):
    # Item 12.
    model = ManyDense()
    model.compile(optimizer=keras.optimizers.SGD(1e37), loss="mse", jit_compile=False)
    run = RunDirectory(tmp_path)
    run.create({})
    training = TrainingRun(model, run, 1, log_every=1)
    with caplog.at_level("WARNING"), pytest.raises(NonFiniteLossError) as raised:
        training.fit(regression_batches(finite_steps=10))
    lines = [r.getMessage() for r in caplog.records if "Not saving" in r.getMessage()]
    assert len(lines) == 1 and "112 variable(s)" in lines[0] and "and 109 more" in lines[0]
    assert len(lines[0]) < 400
    assert "and 109 more" in str(raised.value) and len(str(raised.value)) < 600


class KillAtStep(StepCallback):
    """Ends `fit` as a `kill -9` would, after `step`; step 1 takes `seconds` longer."""

    def __init__(self, step, seconds=0.0):
        super().__init__()
        self.kill_step = step
        self.seconds = seconds

    def on_step_end(self, step, logs):
        if step == 1:
            import time

            time.sleep(self.seconds)
        if step == self.kill_step:
            raise SimulatedKill(step)


class SimulatedKill(BaseException):
    pass


def test_resume_drops_the_killed_steps_from_progress_and_counts_their_time(tmp_path):
    # Item 15: killed at step 3 (checkpoint at 2) after 1.5 s of training.
    model, training = regression_run(tmp_path, keras.optimizers.SGD(0.1), 5, save_every=2)
    with pytest.raises(SimulatedKill):
        training.fit(regression_batches(finite_steps=10), callbacks=[KillAtStep(3, 1.5)])
    run = RunDirectory(tmp_path)
    assert run.read_summary() is None
    model = Regressor()  # A new process's model.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=False)
    model(np.ones((1, 3), "float32"))  # Built, as a resumed trainer is.
    training = TrainingRun(model, run, 5, save_every=2, log_every=1)
    summary = training.fit(regression_batches(finite_steps=10), resume=True)
    assert summary["resumed_from_step"] == 2
    with open(run.progress_path, encoding="utf-8") as file:
        records = [json.loads(line) for line in file]
    steps = [record["step"] for record in records if "step" in record]
    assert steps == [1, 2, 3, 4, 5]  # Each step once: the killed 3 is not repeated.
    assert [step for step, _, _ in run.read_progress()] == [1, 2, 3, 4, 5]
    assert summary["total_seconds"] >= 1.5 + summary["seconds"]


def test_a_second_kill_before_any_step_keeps_the_killed_time(tmp_path):
    model, training = regression_run(tmp_path, keras.optimizers.SGD(0.1), 5, save_every=2)
    with pytest.raises(SimulatedKill):
        training.fit(regression_batches(finite_steps=10), callbacks=[KillAtStep(3, 1.0)])
    run = RunDirectory(tmp_path)
    assert run.restart_progress(2) >= 1.0
    # Killed again before its first step: the time is still recorded.
    assert run.restart_progress(2) >= 1.0
    assert [step for step, _, _ in run.read_progress()] == [1, 2]


@pytest.mark.parametrize("steps, log_every, logged", [(3, 10, [3]), (5, 2, [2, 4, 5])])
def test_tensorboard_logs_the_last_step_too(tmp_path, steps, log_every, logged):
    # Item 23.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = Regressor()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=False)
    run = RunDirectory(tmp_path)
    run.create({})
    TrainingRun(model, run, steps, log_every=log_every).fit(regression_batches(finite_steps=10))
    events = EventAccumulator(str(tmp_path / "logs"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == logged
    assert [e.step for e in events.Scalars("learning_rate")] == logged
