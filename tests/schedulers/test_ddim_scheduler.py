import json

import numpy as np
import pytest

from studio.schedulers import DDIMScheduler

SHAPE = (2, 4, 4, 3)


def reference_ddim_step(model_output, sample, a_t, a_prev, prediction_type, eta, noise):
    """Eq. (12) of Song et al. (2021), in float64."""
    x = sample.astype(np.float64)
    m = model_output.astype(np.float64)
    if prediction_type == "epsilon":
        eps = m
        x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
    else:
        x0 = np.sqrt(a_t) * x - np.sqrt(1 - a_t) * m
        eps = np.sqrt(a_t) * m + np.sqrt(1 - a_t) * x
    sigma = eta * np.sqrt((1 - a_prev) / (1 - a_t)) * np.sqrt(1 - a_t / a_prev)
    result = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - sigma**2) * eps
    if eta > 0:
        result = result + sigma * noise
    return result


def test_stable_diffusion_timesteps():
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(50)
    # SD's config: "leading" spacing, steps_offset=1.
    np.testing.assert_array_equal(scheduler.timesteps, np.arange(981, 0, -20))
    assert scheduler.timesteps.dtype.kind == "i"
    assert scheduler.init_noise_sigma == 1.0


def test_diffusers_documented_timesteps(diffusers_test_schedule):
    # diffusers' test_steps_offset: 5 steps with steps_offset=1.
    scheduler = DDIMScheduler(**diffusers_test_schedule, steps_offset=1)
    scheduler.set_timesteps(5)
    np.testing.assert_array_equal(scheduler.timesteps, [801, 601, 401, 201, 1])
    scheduler = DDIMScheduler(timestep_spacing="trailing")
    scheduler.set_timesteps(10)
    np.testing.assert_array_equal(scheduler.timesteps, np.arange(999, 0, -100))
    scheduler = DDIMScheduler(timestep_spacing="linspace")
    scheduler.set_timesteps(10)
    np.testing.assert_array_equal(
        scheduler.timesteps, [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    )


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_step_matches_eq_12(prediction_type, eta, rng, sd_alphas_cumprod, to_numpy):
    scheduler = DDIMScheduler(prediction_type=prediction_type, eta=eta)
    scheduler.set_timesteps(50)
    sample = rng.standard_normal(SHAPE).astype("float32")
    output = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    result = to_numpy(scheduler.step(output, 501, sample, noise=noise))
    a = sd_alphas_cumprod
    expected = reference_ddim_step(output, sample, a[501], a[481], prediction_type, eta, noise)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_last_step_lands_on_alphas_cumprod_0(prediction_type, rng, sd_alphas_cumprod, to_numpy):
    scheduler = DDIMScheduler(prediction_type=prediction_type, eta=0.3)
    scheduler.set_timesteps(50)
    sample = rng.standard_normal(SHAPE).astype("float32")
    output = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    result = to_numpy(scheduler.step(output, 1, sample, noise=noise))
    a = sd_alphas_cumprod
    # set_alpha_to_one=False: the step after t=1 has alphas_cumprod[0].
    expected = reference_ddim_step(output, sample, a[1], a[0], prediction_type, 0.3, noise)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_perfect_prediction_recovers_x0_in_one_step(prediction_type, rng, to_numpy):
    scheduler = DDIMScheduler(
        prediction_type=prediction_type, timestep_spacing="trailing", set_alpha_to_one=True
    )
    scheduler.set_timesteps(1)
    assert scheduler.timesteps.tolist() == [999]
    clean = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    noisy = scheduler.add_noise(clean, noise, np.full((SHAPE[0],), 999))
    schedule = scheduler.noise_schedule
    perfect = schedule.training_target(clean, noise, np.full((SHAPE[0],), 999))
    result = to_numpy(scheduler.step(perfect, 999, noisy))
    np.testing.assert_allclose(result, clean, atol=2e-4)


def test_perfect_prediction_with_sd_config_lands_on_t0(rng, sd_alphas_cumprod, to_numpy):
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(1)
    assert scheduler.timesteps.tolist() == [1]
    clean = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    noisy = scheduler.add_noise(clean, noise, 1)
    result = to_numpy(scheduler.step(noise, 1, noisy))
    a0 = sd_alphas_cumprod[0]
    np.testing.assert_allclose(
        result, np.sqrt(a0) * clean + np.sqrt(1 - a0) * noise, atol=1e-5
    )


def test_strength_keeps_the_last_steps(rng, sd_alphas_cumprod, to_numpy):
    full = DDIMScheduler()
    full.set_timesteps(50)
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(50, strength=0.3)
    np.testing.assert_array_equal(scheduler.timesteps, full.timesteps[-15:])
    assert scheduler.timesteps[0] == 281
    sample = rng.standard_normal(SHAPE).astype("float32")
    output = rng.standard_normal(SHAPE).astype("float32")
    result = to_numpy(scheduler.step(output, 281, sample))
    expected = reference_ddim_step(
        output, sample, sd_alphas_cumprod[281], sd_alphas_cumprod[261], "epsilon", 0, None
    )
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def _diffusers_loop(scheduler, model, sample, steps=10, strength=1.0, noise=None):
    scheduler.set_timesteps(steps, strength=strength)
    if noise is not None:
        sample = scheduler.add_noise(sample, noise, scheduler.timesteps[:1])
    for t in scheduler.timesteps:
        sample = scheduler.step(model(np.asarray(sample), t), t, sample)
    return np.abs(np.asarray(sample, np.float64))


# diffusers' tests/schedulers/test_scheduler_ddim.py: DDIMScheduler defaults
# there are steps_offset=0 and set_alpha_to_one=True; the test adds
# clip_sample=True.
@pytest.mark.parametrize(
    "overrides, expected_sum, expected_mean",
    [
        ({}, 172.0067, 0.223967),
        ({"prediction_type": "v_prediction"}, 52.5302, 0.0684),
        ({"set_alpha_to_one": True, "beta_start": 0.01}, 149.8295, 0.1951),
        ({"set_alpha_to_one": False, "beta_start": 0.01}, 149.0784, 0.1941),
    ],
)
def test_diffusers_full_loop_values(
    overrides, expected_sum, expected_mean, diffusers_test_schedule, dummy_model,
    dummy_sample_deter,
):
    config = dict(
        diffusers_test_schedule, steps_offset=0, set_alpha_to_one=True, clip_sample=True
    )
    config.update(overrides)
    result = _diffusers_loop(DDIMScheduler(**config), dummy_model, dummy_sample_deter)
    assert abs(result.sum() - expected_sum) < 1e-2
    assert abs(result.mean() - expected_mean) < 1e-3


def test_diffusers_full_loop_with_noise(
    diffusers_test_schedule, dummy_model, dummy_sample_deter, dummy_noise_deter
):
    scheduler = DDIMScheduler(
        **diffusers_test_schedule, steps_offset=0, set_alpha_to_one=True, clip_sample=True
    )
    # diffusers starts at timesteps[8:] of 10 steps: strength 0.2.
    result = _diffusers_loop(
        scheduler, dummy_model, dummy_sample_deter, strength=0.2, noise=dummy_noise_deter
    )
    assert scheduler.timesteps.tolist() == [100, 0]
    assert abs(result.sum() - 354.5418) < 1e-2
    assert abs(result.mean() - 0.4616) < 1e-3


def test_step_is_compilable(rng, compile_function, to_numpy):
    scheduler = DDIMScheduler(eta=0.7, prediction_type="v_prediction")
    scheduler.set_timesteps(20)
    sample = rng.standard_normal(SHAPE).astype("float32")
    output = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    timestep = int(scheduler.timesteps[3])

    def step(output, sample, noise):
        return scheduler.step(output, timestep, sample, noise=noise)

    np.testing.assert_allclose(
        to_numpy(compile_function(step)(output, sample, noise)),
        to_numpy(step(output, sample, noise)),
        rtol=1e-6,
        atol=1e-6,
    )


def test_errors_say_what_was_expected(rng):
    scheduler = DDIMScheduler(eta=0.5)
    sample = rng.standard_normal(SHAPE).astype("float32")
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.step(sample, 981, sample, noise=sample)
    scheduler.set_timesteps(50)
    with pytest.raises(ValueError, match="Received: timestep=980"):
        scheduler.step(sample, 980, sample, noise=sample)
    with pytest.raises(ValueError, match="noise=None"):
        scheduler.step(sample, 981, sample)
    with pytest.raises(ValueError, match="strength"):
        scheduler.set_timesteps(10, strength=0.05)
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.set_timesteps(0)
    with pytest.raises(ValueError, match="steps_offset"):
        scheduler.set_timesteps(1000)
    with pytest.raises(ValueError, match="timestep_spacing"):
        DDIMScheduler(timestep_spacing="karras")


def test_config_round_trip():
    scheduler = DDIMScheduler(prediction_type="v_prediction", eta=0.25, clip_sample=True)
    config = json.loads(json.dumps(scheduler.get_config()))
    rebuilt = DDIMScheduler.from_config(config)
    assert rebuilt.get_config() == scheduler.get_config()
    assert config["eta"] == 0.25 and config["steps_offset"] == 1
    assert rebuilt.a1111_name == "DDIM"
