"""Tests of TrainingCheckpoint on a small model with an optimizer and a seed generator."""

import os

import keras
import numpy as np
import pytest

from studio.trainers.run.training_checkpoint import TrainingCheckpoint, training_state_variables


class NoisyRegressor(keras.Model):
    """A Dense layer trained on noisy inputs, with a frozen layer beside it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(1)
        self.frozen = keras.layers.Dense(1, trainable=False)
        self.seed_generator = keras.random.SeedGenerator(5)

    def call(self, x):
        noise = keras.random.normal(keras.ops.shape(x), seed=self.seed_generator)
        return self.dense(x + 0.1 * noise) + 0.0 * self.frozen(x)


def trained_model(steps=2):
    model = NoisyRegressor()
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    x = np.ones((4, 3), "float32")
    model.fit(x, np.zeros((4, 1), "float32"), epochs=steps, batch_size=4, verbose=0)
    return model


def values(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def test_state_holds_trainable_optimizer_and_seed_variables_not_frozen_ones():
    model = trained_model()
    state = training_state_variables(model)
    ids = {id(v) for v in state}
    assert all(id(v) in ids for v in model.trainable_variables)
    assert all(id(v) in ids for v in model.optimizer.variables)
    assert id(model.seed_generator.state) in ids
    assert not any(id(v) in ids for v in model.frozen.weights)


def test_restore_brings_back_the_saved_state(tmp_path):
    model = trained_model()
    checkpoints = TrainingCheckpoint(tmp_path)
    saved = values(training_state_variables(model))
    folder = checkpoints.save(model, step=2, info={"note": "x"})
    assert os.path.basename(folder) == "step-000002"
    for variable in training_state_variables(model):
        variable.assign(np.full(variable.shape, 7, keras.backend.standardize_dtype(variable.dtype)))
    info = checkpoints.restore(model)
    assert info["step"] == 2 and info["note"] == "x"
    for before, after in zip(saved, values(training_state_variables(model))):
        np.testing.assert_array_equal(before, after)


def test_restore_into_a_fresh_unbuilt_optimizer(tmp_path):
    model = trained_model()
    TrainingCheckpoint(tmp_path).save(model, step=2)
    fresh = NoisyRegressor()
    fresh.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    fresh(np.ones((1, 3), "float32"))
    assert not fresh.optimizer.built
    TrainingCheckpoint(tmp_path).restore(fresh)
    for before, after in zip(values(training_state_variables(model)),
                             values(training_state_variables(fresh))):
        np.testing.assert_array_equal(before, after)


def test_artifacts_are_written_inside_the_checkpoint(tmp_path):
    model = trained_model()

    def artifacts(folder):
        with open(os.path.join(folder, "result.txt"), "w") as file:
            file.write("done")

    folder = TrainingCheckpoint(tmp_path).save(model, step=1, artifacts=artifacts)
    with open(os.path.join(folder, "result.txt")) as file:
        assert file.read() == "done"


def test_a_failed_save_leaves_no_checkpoint_and_no_temporary_folder(tmp_path):
    model = trained_model()
    checkpoints = TrainingCheckpoint(tmp_path)
    checkpoints.save(model, step=1)

    def failing(folder):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoints.save(model, step=2, artifacts=failing)
    assert checkpoints.steps() == [1]
    assert sorted(os.listdir(tmp_path)) == ["step-000001"]


def test_latest_ignores_incomplete_folders_and_keep_prunes(tmp_path):
    model = trained_model()
    checkpoints = TrainingCheckpoint(tmp_path, keep=2)
    for step in (1, 2, 3):
        checkpoints.save(model, step=step)
    os.makedirs(tmp_path / "step-000009")  # No checkpoint.json: not complete.
    assert checkpoints.steps() == [2, 3]
    assert checkpoints.latest() == checkpoints.folder(3)


def test_restore_rejects_another_model(tmp_path):
    TrainingCheckpoint(tmp_path).save(trained_model(), step=1)
    other = keras.Sequential([keras.layers.Dense(2)])
    other.compile(optimizer="adam", loss="mse")
    other.build((None, 3))
    with pytest.raises(ValueError, match="does not fit this model"):
        TrainingCheckpoint(tmp_path).restore(other)


def test_restore_without_checkpoint_raises(tmp_path):
    model = trained_model(steps=1)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        TrainingCheckpoint(tmp_path).restore(model)
