"""Tests of WarmupSchedule (any backend)."""

import json
import math

import keras
import pytest

from studio.trainers.warmup_schedule import WarmupSchedule


def rate(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_linear_warmup_then_constant():
    schedule = WarmupSchedule(1e-2, warmup_steps=4)
    assert [rate(schedule, s) for s in range(6)] == pytest.approx(
        [2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2, 1e-2]
    )


def test_counts_updates_not_micro_batches():
    schedule = WarmupSchedule(1e-2, warmup_steps=4, gradient_accumulation_steps=3)
    # Micro-batches 0-2 are the first update, 3-5 the second.
    assert [rate(schedule, s) for s in (0, 2, 3, 5, 11, 12)] == pytest.approx(
        [2.5e-3, 2.5e-3, 5e-3, 5e-3, 1e-2, 1e-2]
    )


def test_cosine_decay_after_warmup():
    schedule = WarmupSchedule(1.0, warmup_steps=2, decay="cosine", decay_steps=12)
    assert rate(schedule, 0) == pytest.approx(0.5)
    assert rate(schedule, 2) == pytest.approx(1.0)
    assert rate(schedule, 7) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert rate(schedule, 12) == pytest.approx(0.0, abs=1e-7)
    assert rate(schedule, 50) == pytest.approx(0.0, abs=1e-7)


def test_no_warmup_is_constant():
    schedule = WarmupSchedule(3e-4)
    assert rate(schedule, 0) == pytest.approx(3e-4)
    assert rate(schedule, 1000) == pytest.approx(3e-4)


def test_config_round_trips_through_json_and_keras_serialization():
    schedule = WarmupSchedule(1e-3, warmup_steps=10, decay="cosine", decay_steps=100,
                              gradient_accumulation_steps=2)
    config = json.loads(json.dumps(schedule.get_config()))
    assert WarmupSchedule.from_config(config).get_config() == schedule.get_config()
    # Registered with Keras: an optimizer using it saves and loads.
    optimizer = keras.optimizers.Adam(schedule)
    rebuilt = keras.optimizers.deserialize(
        json.loads(json.dumps(keras.optimizers.serialize(optimizer)))
    )
    # At step 0 of a 10-step warm-up: a tenth of the rate.
    assert float(keras.ops.convert_to_numpy(rebuilt.learning_rate)) == pytest.approx(1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": 1e-3, "decay": "step"}, "decay"),
        ({"learning_rate": 1e-3, "decay": "cosine"}, "decay_steps"),
        ({"learning_rate": 1e-3, "warmup_steps": -1}, "warmup_steps"),
        ({"learning_rate": 1e-3, "gradient_accumulation_steps": 0}, "gradient_accumulation_steps"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WarmupSchedule(**kwargs)
