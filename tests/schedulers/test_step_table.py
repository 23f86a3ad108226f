"""A sampler's step table, applied with `keras.ops`, is its `step`.

The compiled sampling loop runs the table (`studio.pipelines.SamplingLoop`);
here each row is checked against `step` with a stand-in UNet, for every
sampler, both prediction types, image-to-image strengths, DDIM's eta and
clipping, and DPM-Solver++'s sigma_min ending (second-order last step).
"""

import numpy as np
import pytest
from keras import ops

from studio.schedulers import SCHEDULER_NAMES, get_scheduler
from studio.schedulers.step_table import STEP_TABLE_COLUMNS, step_from_table

SHAPE = (2, 4, 4, 3)
VARIANTS = [(name, {}) for name in SCHEDULER_NAMES] + [
    ("ddim", {"eta": 0.7}),
    ("ddim", {"clip_sample": True}),
    ("euler", {"timestep_spacing": "linspace"}),
    ("dpmpp_2m", {"final_sigmas_type": "sigma_min", "lower_order_final": False}),
    ("dpmpp_2m_karras", {"final_sigmas_type": "sigma_min"}),
]


def _stand_in_unet(model_input, timestep):
    return 0.7 * model_input + 0.01 * np.sin(float(timestep))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("strength", [1.0, 0.6])
@pytest.mark.parametrize("name,options", VARIANTS)
def test_table_rows_are_the_steps(name, options, strength, prediction_type):
    scheduler = get_scheduler(name, prediction_type=prediction_type, **options)
    scheduler.set_timesteps(7, strength=strength)
    table = scheduler.step_table()
    assert set(table) == set(STEP_TABLE_COLUMNS)
    assert all(column.shape == (len(scheduler.timesteps),) for column in table.values())
    np.testing.assert_allclose(table["timestep"], scheduler.timesteps, rtol=1e-6)
    rng = np.random.default_rng(3)
    by_step = by_table = rng.standard_normal(SHAPE).astype("float32") * 3.0
    previous = np.zeros(SHAPE, "float32")
    for index, timestep in enumerate(scheduler.timesteps):
        noise = rng.standard_normal(SHAPE).astype("float32")
        model_input = ops.convert_to_numpy(scheduler.scale_model_input(by_step, timestep))
        by_step = ops.convert_to_numpy(
            scheduler.step(_stand_in_unet(model_input, timestep), timestep, by_step, noise=noise)
        )
        row = {key: column[index] for key, column in table.items()}
        table_input = row["input_scale"] * by_table
        np.testing.assert_allclose(table_input, model_input, rtol=1e-5, atol=1e-5)
        by_table, previous = step_from_table(
            row, _stand_in_unet(table_input, timestep), by_table, noise, previous
        )
        by_table, previous = ops.convert_to_numpy(by_table), ops.convert_to_numpy(previous)
        np.testing.assert_allclose(by_table, by_step, rtol=1e-4, atol=1e-4)


def test_table_needs_timesteps():
    with pytest.raises(ValueError, match="set_timesteps"):
        get_scheduler("euler").step_table()
