import json

import numpy as np
import pytest

from studio.schedulers import EulerDiscreteScheduler

SHAPE = (2, 4, 4, 3)


def reference_sigma(alphas_cumprod, timestep):
    a = alphas_cumprod[timestep]
    return np.sqrt((1 - a) / a)


def reference_denoised(model_output, sample, sigma, prediction_type):
    """k-diffusion's x_0 estimate from the unscaled sample x = x_0 + sigma * eps."""
    x = sample.astype(np.float64)
    m = model_output.astype(np.float64)
    if prediction_type == "epsilon":
        return x - sigma * m
    # v-prediction (Salimans & Ho): c_skip = 1 / (sigma^2 + 1),
    # c_out = -sigma / sqrt(sigma^2 + 1).
    return x / (sigma**2 + 1) - sigma / np.sqrt(sigma**2 + 1) * m


def test_trailing_timesteps_start_at_sigma_max(sd_alphas_cumprod):
    scheduler = EulerDiscreteScheduler()
    scheduler.set_timesteps(50)
    np.testing.assert_array_equal(scheduler.timesteps, np.arange(999, 0, -20))
    assert scheduler.timesteps.dtype.kind == "i"
    # diffusers: init_noise_sigma is sigma_max for "trailing" and "linspace".
    assert scheduler.init_noise_sigma == pytest.approx(14.6146, abs=1e-4)


def test_leading_timesteps_and_init_noise_sigma(sd_alphas_cumprod):
    scheduler = EulerDiscreteScheduler(timestep_spacing="leading")
    scheduler.set_timesteps(50)
    np.testing.assert_array_equal(scheduler.timesteps, np.arange(981, 0, -20))
    sigma = reference_sigma(sd_alphas_cumprod, 981)
    assert scheduler.init_noise_sigma == pytest.approx(np.sqrt(sigma**2 + 1), rel=1e-9)


def test_linspace_timesteps_are_fractional(sd_alphas_cumprod):
    scheduler = EulerDiscreteScheduler(timestep_spacing="linspace")
    scheduler.set_timesteps(4)
    np.testing.assert_allclose(scheduler.timesteps, [999, 666, 333, 0])
    scheduler.set_timesteps(10)
    assert scheduler.timesteps[1] == pytest.approx(888.0)
    scheduler.set_timesteps(7)
    t = scheduler.timesteps[1]
    assert t == pytest.approx(832.5)
    # Sigma is interpolated linearly between the integer timesteps.
    low, high = reference_sigma(sd_alphas_cumprod, 832), reference_sigma(sd_alphas_cumprod, 833)
    assert scheduler.sigma(t) == pytest.approx((low + high) / 2, rel=1e-9)


def test_scale_model_input(rng, sd_alphas_cumprod, to_numpy):
    scheduler = EulerDiscreteScheduler()
    scheduler.set_timesteps(50)
    sample = rng.standard_normal(SHAPE).astype("float32")
    sigma = reference_sigma(sd_alphas_cumprod, 499)
    np.testing.assert_allclose(
        to_numpy(scheduler.scale_model_input(sample, 499)),
        sample / np.sqrt(sigma**2 + 1),
        rtol=1e-6,
    )


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_euler_step(prediction_type, rng, sd_alphas_cumprod, to_numpy):
    scheduler = EulerDiscreteScheduler(prediction_type=prediction_type)
    scheduler.set_timesteps(50)
    sample = 5 * rng.standard_normal(SHAPE).astype("float32")
    output = rng.standard_normal(SHAPE).astype("float32")
    result = to_numpy(scheduler.step(output, 599, sample))
    sigma = reference_sigma(sd_alphas_cumprod, 599)
    sigma_next = reference_sigma(sd_alphas_cumprod, 579)
    derivative = (sample - reference_denoised(output, sample, sigma, prediction_type)) / sigma
    expected = sample + (sigma_next - sigma) * derivative
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_euler_ancestral_step(prediction_type, rng, sd_alphas_cumprod, to_numpy):
    scheduler = EulerDiscreteScheduler(prediction_type=prediction_type, ancestral=True)
    scheduler.set_timesteps(50)
    sample = 5 * rng.standard_normal(SHAPE).astype("float32")
    output = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    result = to_numpy(scheduler.step(output, 599, sample, noise=noise))
    sigma_from = reference_sigma(sd_alphas_cumprod, 599)
    sigma_to = reference_sigma(sd_alphas_cumprod, 579)
    # k-diffusion's get_ancestral_step with eta=1.
    sigma_up = np.sqrt(sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2)
    sigma_down = np.sqrt(sigma_to**2 - sigma_up**2)
    denoised = reference_denoised(output, sample, sigma_from, prediction_type)
    expected = sample + (sigma_down - sigma_from) * (sample - denoised) / sigma_from
    expected = expected + sigma_up * noise
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)
    # The step keeps the marginal variance: sigma_down^2 + sigma_up^2 = sigma_to^2.
    assert sigma_down**2 + sigma_up**2 == pytest.approx(sigma_to**2)


@pytest.mark.parametrize("ancestral", [False, True])
def test_last_step_returns_the_denoised_sample(ancestral, rng, sd_alphas_cumprod, to_numpy):
    scheduler = EulerDiscreteScheduler(ancestral=ancestral)
    scheduler.set_timesteps(50)
    sample = rng.standard_normal(SHAPE).astype("float32")
    output = rng.standard_normal(SHAPE).astype("float32")
    noise = 100 * rng.standard_normal(SHAPE).astype("float32")
    result = to_numpy(scheduler.step(output, 19, sample, noise=noise))
    sigma = reference_sigma(sd_alphas_cumprod, 19)
    np.testing.assert_allclose(result, sample - sigma * output, rtol=1e-5, atol=1e-5)


def test_perfect_prediction_recovers_x0(rng, to_numpy):
    scheduler = EulerDiscreteScheduler()
    scheduler.set_timesteps(1)
    clean = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    noisy = scheduler.add_noise(clean, noise, scheduler.timesteps[:1])
    result = to_numpy(scheduler.step(noise, scheduler.timesteps[0], noisy))
    np.testing.assert_allclose(result, clean, atol=2e-5)


def test_add_noise_is_sigma_based(rng, sd_alphas_cumprod, to_numpy):
    scheduler = EulerDiscreteScheduler()
    scheduler.set_timesteps(50, strength=0.6)
    assert scheduler.timesteps[0] == 599
    clean = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    noisy = to_numpy(scheduler.add_noise(clean, noise, np.full((SHAPE[0],), 599)))
    sigma = reference_sigma(sd_alphas_cumprod, 599)
    np.testing.assert_allclose(noisy, clean + sigma * noise, rtol=1e-5, atol=1e-5)


def test_strength_keeps_the_last_steps():
    full = EulerDiscreteScheduler()
    full.set_timesteps(30)
    scheduler = EulerDiscreteScheduler()
    scheduler.set_timesteps(30, strength=0.75)
    np.testing.assert_array_equal(scheduler.timesteps, full.timesteps[-22:])
    assert scheduler.init_noise_sigma == full.init_noise_sigma


def _diffusers_loop(scheduler, model, sample):
    scheduler.set_timesteps(10)
    sample = sample * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        # As diffusers' test: the scaled input replaces the sample.
        sample = scheduler.scale_model_input(sample, t)
        sample = scheduler.step(model(np.asarray(sample), t), t, sample)
    return np.abs(np.asarray(sample, np.float64))


# diffusers' tests/schedulers/test_scheduler_euler.py: 1100 training steps,
# "linspace" (diffusers' default) spacing.
@pytest.mark.parametrize(
    "prediction_type, expected_sum, expected_mean",
    [("epsilon", 10.0807, 0.0131), ("v_prediction", 0.0002, 2.2676e-06)],
)
def test_diffusers_full_loop_values(
    prediction_type, expected_sum, expected_mean, diffusers_test_schedule, dummy_model,
    dummy_sample_deter,
):
    config = dict(
        diffusers_test_schedule,
        num_train_timesteps=1100,
        timestep_spacing="linspace",
        prediction_type=prediction_type,
    )
    result = _diffusers_loop(EulerDiscreteScheduler(**config), dummy_model, dummy_sample_deter)
    assert abs(result.sum() - expected_sum) < 1e-2
    assert abs(result.mean() - expected_mean) < 1e-3


def test_ancestral_step_is_compilable(rng, compile_function, to_numpy):
    scheduler = EulerDiscreteScheduler(ancestral=True)
    scheduler.set_timesteps(20)
    sample = rng.standard_normal(SHAPE).astype("float32")
    output = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    timestep = int(scheduler.timesteps[5])

    def step(output, sample, noise):
        scaled = scheduler.scale_model_input(sample, timestep)
        return scheduler.step(output * scaled, timestep, sample, noise=noise)

    np.testing.assert_allclose(
        to_numpy(compile_function(step)(output, sample, noise)),
        to_numpy(step(output, sample, noise)),
        rtol=1e-6,
        atol=1e-6,
    )


def test_errors(rng):
    scheduler = EulerDiscreteScheduler(ancestral=True)
    sample = rng.standard_normal(SHAPE).astype("float32")
    with pytest.raises(ValueError, match="set_timesteps"):
        scheduler.init_noise_sigma
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match="noise=None"):
        scheduler.step(sample, 999, sample)
    with pytest.raises(ValueError, match="Received: timestep=998"):
        scheduler.scale_model_input(sample, 998)


def test_config_and_names():
    scheduler = EulerDiscreteScheduler(ancestral=True, prediction_type="v_prediction")
    config = json.loads(json.dumps(scheduler.get_config()))
    rebuilt = EulerDiscreteScheduler.from_config(config)
    assert rebuilt.get_config() == scheduler.get_config()
    assert rebuilt.a1111_name == "Euler a"
    assert EulerDiscreteScheduler().a1111_name == "Euler"
