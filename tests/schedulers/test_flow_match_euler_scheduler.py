"""SD3's flow-matching Euler sampler against diffusers' FlowMatchEulerDiscreteScheduler."""

import numpy as np
import pytest
from keras import ops

from studio.errors import InvalidInputError
from studio.schedulers import FlowMatchEulerScheduler, get_scheduler
from studio.schedulers.step_table import step_from_table

SHAPE = (2, 4, 4, 16)


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def _velocity(sample, timestep):
    """A stand-in denoiser: any smooth function of the sample and the timestep."""
    return 0.6 * sample - 0.3 + 0.002 * float(timestep)


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("steps", [1, 2, 5, 28])
def test_sigmas_and_timesteps_are_diffusers(shift, steps):
    from diffusers import FlowMatchEulerDiscreteScheduler as DiffusersScheduler
    reference = DiffusersScheduler(num_train_timesteps=1000, shift=shift)
    reference.set_timesteps(steps)
    scheduler = FlowMatchEulerScheduler(num_train_timesteps=1000, shift=shift)
    scheduler.set_timesteps(steps)
    np.testing.assert_allclose(scheduler.sigmas, reference.sigmas.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(scheduler.timesteps, reference.timesteps.numpy(), rtol=1e-6)
    # Closed form: from pure noise to clean, the first step at t = 1000.
    assert scheduler.sigmas[0] == 1.0 and scheduler.sigmas[-1] == 0.0
    assert len(scheduler.timesteps) == steps


def test_shift_three_bends_the_schedule_toward_noise():
    scheduler = FlowMatchEulerScheduler(shift=3.0)
    # shift * s / (1 + (shift - 1) * s): 0.5 -> 0.75, 0.25 -> 0.5.
    np.testing.assert_allclose(scheduler.shifted([0.5, 0.25, 1.0, 0.0]), [0.75, 0.5, 1.0, 0.0])


@pytest.mark.parametrize("stochastic", [False, True])
def test_steps_are_diffusers(stochastic):
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler as DiffusersScheduler
    reference = DiffusersScheduler(shift=3.0, stochastic_sampling=stochastic)
    reference.set_timesteps(6)
    scheduler = get_scheduler("euler", prediction_type="flow", shift=3.0,
                              stochastic_sampling=stochastic)  # fmt: skip
    scheduler.set_timesteps(6)
    rng = np.random.default_rng(0)
    ours = theirs = rng.standard_normal(SHAPE).astype("float32")
    for index, timestep in enumerate(scheduler.timesteps):
        generator = torch.Generator().manual_seed(index)
        # diffusers' stochastic step draws `randn_tensor(shape, generator)`.
        noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(index)).numpy()
        ours = numpy(scheduler.step(_velocity(ours, timestep), timestep, ours, noise=noise))
        t = reference.timesteps[index]
        theirs = reference.step(
            torch.from_numpy(_velocity(theirs, float(t))), t, torch.from_numpy(theirs),
            generator=generator,
        ).prev_sample.numpy()  # fmt: skip
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    assert np.ptp(ours) > 0.1


@pytest.mark.parametrize("stochastic", [False, True])
@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_table_rows_are_the_steps(stochastic, strength):
    scheduler = FlowMatchEulerScheduler(shift=3.0, stochastic_sampling=stochastic)
    scheduler.set_timesteps(7, strength=strength)
    table = scheduler.step_table()
    np.testing.assert_allclose(table["timestep"], scheduler.timesteps, rtol=1e-6)
    rng = np.random.default_rng(1)
    by_step = by_table = rng.standard_normal(SHAPE).astype("float32")
    previous = np.zeros(SHAPE, "float32")
    for index, timestep in enumerate(scheduler.timesteps):
        noise = rng.standard_normal(SHAPE).astype("float32")
        by_step = numpy(scheduler.step(_velocity(by_step, timestep), timestep, by_step, noise))
        row = {key: column[index] for key, column in table.items()}
        assert row["input_scale"] == 1.0
        by_table, previous = step_from_table(
            row, _velocity(by_table, timestep), by_table, noise, previous
        )
        by_table, previous = numpy(by_table), numpy(previous)
        np.testing.assert_allclose(by_table, by_step, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_the_exact_velocity_lands_on_the_clean_sample_in_any_number_of_steps(steps):
    """On a straight path the velocity toward one x0 is `(x - x0) / sigma`: Euler is exact."""
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal(SHAPE).astype("float32")
    scheduler = FlowMatchEulerScheduler(shift=3.0)
    scheduler.set_timesteps(steps)
    sample = rng.standard_normal(SHAPE).astype("float32") * scheduler.init_noise_sigma
    for timestep in scheduler.timesteps:
        sigma = scheduler.sigma(timestep)
        sample = numpy(scheduler.step((sample - x0) / sigma, timestep, sample))
    np.testing.assert_allclose(sample, x0, atol=1e-5)


def test_add_noise_is_diffusers_scale_noise():
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler as DiffusersScheduler
    reference = DiffusersScheduler(shift=3.0)
    reference.set_timesteps(10)
    scheduler = FlowMatchEulerScheduler(shift=3.0)
    scheduler.set_timesteps(10)
    rng = np.random.default_rng(3)
    x0, noise = (rng.standard_normal(SHAPE).astype("float32") for _ in range(2))
    picked = np.array([scheduler.timesteps[2], scheduler.timesteps[7]])
    ours = numpy(scheduler.add_noise(x0, noise, picked))
    theirs = reference.scale_noise(
        torch.from_numpy(x0), reference.timesteps[[2, 7]], torch.from_numpy(noise)
    ).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_image_to_image_runs_the_last_steps_of_the_schedule():
    full = FlowMatchEulerScheduler()
    full.set_timesteps(10)
    partial = FlowMatchEulerScheduler()
    partial.set_timesteps(10, strength=0.6)
    np.testing.assert_array_equal(partial.timesteps, full.timesteps[4:])
    np.testing.assert_array_equal(partial.sigmas, full.sigmas[4:])


def test_flow_models_take_euler_or_ddim_and_refuse_ddpm_samplers():
    for name in ("euler", "Euler", "ddim", "DDIM"):
        scheduler = get_scheduler(name, prediction_type="flow", num_train_timesteps=1000, shift=3.0)
        assert isinstance(scheduler, FlowMatchEulerScheduler)
        assert scheduler.a1111_name == "Euler"
    with pytest.raises(InvalidInputError, match="sampler='dpmpp_2m'"):
        get_scheduler("dpmpp_2m", prediction_type="flow", shift=3.0)
    with pytest.raises(ValueError, match="shift=0"):
        FlowMatchEulerScheduler(shift=0)
    with pytest.raises(ValueError, match="noise=None"):
        scheduler = FlowMatchEulerScheduler(stochastic_sampling=True)
        scheduler.set_timesteps(2)
        scheduler.step(np.zeros(SHAPE), scheduler.timesteps[0], np.zeros(SHAPE))
    config = FlowMatchEulerScheduler(shift=2.0, stochastic_sampling=True).get_config()
    assert FlowMatchEulerScheduler.from_config(config).get_config() == config
