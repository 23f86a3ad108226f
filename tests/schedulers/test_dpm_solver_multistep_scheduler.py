import json

import numpy as np
import pytest

from studio.schedulers import DPMSolverMultistepScheduler

SHAPE = (2, 4, 4, 3)


def vp(alphas_cumprod, timestep):
    """(alpha_t, sigma_t, lambda_t) of the variance-preserving process."""
    a = alphas_cumprod[timestep]
    alpha, sigma = np.sqrt(a), np.sqrt(1 - a)
    return alpha, sigma, np.log(alpha / sigma)


def data_prediction(model_output, sample, alpha, sigma, prediction_type):
    x = sample.astype(np.float64)
    m = model_output.astype(np.float64)
    if prediction_type == "epsilon":
        return (x - sigma * m) / alpha
    return alpha * x - sigma * m


def first_order(sample, x0, s, t):
    """DPM-Solver++(1), Lu et al. 2022 eq. (5) with (alpha, sigma, lambda) at s and t."""
    alpha_s, sigma_s, lambda_s = s
    alpha_t, sigma_t, lambda_t = t
    h = lambda_t - lambda_s
    return sigma_t / sigma_s * sample - alpha_t * np.expm1(-h) * x0


def second_order(sample, x0, x0_previous, previous, s, t):
    """DPM-Solver++(2M), Lu et al. 2022 Algorithm 2."""
    alpha_t, sigma_t, lambda_t = t
    _, sigma_s, lambda_s = s
    h = lambda_t - lambda_s
    r = (lambda_s - previous[2]) / h
    d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_previous
    return sigma_t / sigma_s * sample - alpha_t * np.expm1(-h) * d


def test_linspace_timesteps():
    scheduler = DPMSolverMultistepScheduler()
    scheduler.set_timesteps(10)
    # diffusers' "linspace": round(linspace(0, 999, 11)), descending, minus the 0.
    np.testing.assert_array_equal(
        scheduler.timesteps, [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]
    )
    scheduler.set_timesteps(20)
    assert scheduler.timesteps[:3].tolist() == [999, 949, 899]
    assert scheduler.timesteps[-1] == 50
    assert scheduler.init_noise_sigma == 1.0


def test_karras_sigmas(sd_alphas_cumprod):
    scheduler = DPMSolverMultistepScheduler(use_karras_sigmas=True)
    scheduler.set_timesteps(10)
    table = np.sqrt((1 - sd_alphas_cumprod) / sd_alphas_cumprod)
    ramp = np.linspace(0, 1, 10)
    rho = 7.0
    # Karras et al. 2022, eq. (5).
    start, stop = table[-1] ** (1 / rho), table[0] ** (1 / rho)
    expected = (start + ramp * (stop - start)) ** rho
    sigmas = np.array([scheduler.sigma(t) for t in scheduler.timesteps])
    np.testing.assert_allclose(sigmas, expected, rtol=1e-9)
    assert scheduler.timesteps[0] == 999 and scheduler.timesteps[-1] == 0
    # Each timestep is the rounded fractional timestep of its sigma, with log
    # sigma interpolated linearly between training timesteps (as diffusers).
    log_table = np.log(table)
    for t, sigma in zip(scheduler.timesteps, sigmas):
        i = min(np.searchsorted(log_table, np.log(sigma)), len(table) - 1)
        i = max(i - 1, 0)
        fraction = (np.log(sigma) - log_table[i]) / (log_table[i + 1] - log_table[i])
        assert abs(t - (i + fraction)) <= 0.5 + 1e-9
    assert scheduler.a1111_name == "DPM++ 2M Karras"


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_first_second_and_last_updates(prediction_type, rng, sd_alphas_cumprod, to_numpy):
    scheduler = DPMSolverMultistepScheduler(prediction_type=prediction_type)
    scheduler.set_timesteps(5)
    timesteps = scheduler.timesteps.tolist()
    # round(linspace(0, 999, 6)) = 0, 200, 400, 599, 799, 999.
    assert timesteps == [999, 799, 599, 400, 200]
    a = sd_alphas_cumprod
    outputs = [rng.standard_normal(SHAPE).astype("float32") for _ in timesteps]
    sample = rng.standard_normal(SHAPE).astype("float32")
    reference = sample.astype(np.float64)

    # Step 1 has no history: first order.
    s, t = vp(a, 999), vp(a, 799)
    x0_first = data_prediction(outputs[0], sample, s[0], s[1], prediction_type)
    reference = first_order(reference, x0_first, s, t)
    sample = scheduler.step(outputs[0], 999, sample)
    np.testing.assert_allclose(to_numpy(sample), reference, rtol=1e-5, atol=1e-5)

    # Step 2: second order with the previous data prediction.
    previous, s, t = vp(a, 999), vp(a, 799), vp(a, 599)
    x0_second = data_prediction(outputs[1], to_numpy(sample), s[0], s[1], prediction_type)
    reference = second_order(to_numpy(sample), x0_second, x0_first, previous, s, t)
    sample = scheduler.step(outputs[1], 799, sample)
    np.testing.assert_allclose(to_numpy(sample), reference, rtol=1e-5, atol=1e-5)

    sample = scheduler.step(outputs[2], 599, sample)
    sample = scheduler.step(outputs[3], 400, sample)
    # Last step: first order to sigma = 0, i.e. the data prediction itself.
    alpha, sigma, _ = vp(a, 200)
    x0_last = data_prediction(outputs[4], to_numpy(sample), alpha, sigma, prediction_type)
    sample = scheduler.step(outputs[4], 200, sample)
    np.testing.assert_allclose(to_numpy(sample), x0_last, rtol=1e-5, atol=1e-5)


def test_perfect_prediction_recovers_x0(rng, to_numpy):
    scheduler = DPMSolverMultistepScheduler()
    scheduler.set_timesteps(1)
    clean = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    noisy = scheduler.add_noise(clean, noise, scheduler.timesteps[:1])
    result = to_numpy(scheduler.step(noise, scheduler.timesteps[0], noisy))
    np.testing.assert_allclose(result, clean, atol=2e-4)


def test_set_timesteps_clears_history(rng, to_numpy):
    scheduler = DPMSolverMultistepScheduler()
    sample = rng.standard_normal(SHAPE).astype("float32")
    output = rng.standard_normal(SHAPE).astype("float32")
    scheduler.set_timesteps(10)
    first = to_numpy(scheduler.step(output, 999, sample))
    scheduler.step(output, 899, sample)
    scheduler.set_timesteps(10)
    np.testing.assert_array_equal(to_numpy(scheduler.step(output, 999, sample)), first)


def test_steps_must_come_in_order(rng):
    scheduler = DPMSolverMultistepScheduler()
    scheduler.set_timesteps(10)
    sample = rng.standard_normal(SHAPE).astype("float32")
    scheduler.step(sample, 999, sample)
    with pytest.raises(ValueError, match="Expected timestep 899. Received: timestep=799"):
        scheduler.step(sample, 799, sample)


def test_strength_and_add_noise(rng, sd_alphas_cumprod, to_numpy):
    full = DPMSolverMultistepScheduler()
    full.set_timesteps(20)
    scheduler = DPMSolverMultistepScheduler()
    scheduler.set_timesteps(20, strength=0.5)
    np.testing.assert_array_equal(scheduler.timesteps, full.timesteps[-10:])
    start = scheduler.timesteps[0]
    assert start == 500
    clean = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    noisy = to_numpy(scheduler.add_noise(clean, noise, np.full((SHAPE[0],), start)))
    a = sd_alphas_cumprod[start]
    np.testing.assert_allclose(noisy, np.sqrt(a) * clean + np.sqrt(1 - a) * noise, atol=1e-5)
    # The first image-to-image step has no history: first order.
    output = rng.standard_normal(SHAPE).astype("float32")
    s, t = vp(sd_alphas_cumprod, 500), vp(sd_alphas_cumprod, 450)
    expected = first_order(noisy, data_prediction(output, noisy, s[0], s[1], "epsilon"), s, t)
    np.testing.assert_allclose(
        to_numpy(scheduler.step(output, start, noisy)), expected, rtol=1e-5, atol=1e-5
    )


def _diffusers_loop(scheduler, model, sample, strength=1.0, noise=None):
    scheduler.set_timesteps(10, strength=strength)
    if noise is not None:
        sample = scheduler.add_noise(sample, noise, scheduler.timesteps[:1])
    for t in scheduler.timesteps:
        sample = scheduler.step(model(np.asarray(sample), t), t, sample)
    return np.abs(np.asarray(sample, np.float64))


# diffusers' tests/schedulers/test_scheduler_dpm_multi.py runs with
# final_sigmas_type="sigma_min" and lower_order_final=False.
@pytest.mark.parametrize(
    "overrides, expected_mean",
    [
        ({}, 0.3301),
        ({"prediction_type": "v_prediction"}, 0.2251),
        ({"prediction_type": "v_prediction", "use_karras_sigmas": True}, 0.2096),
    ],
)
def test_diffusers_full_loop_values(
    overrides, expected_mean, diffusers_test_schedule, dummy_model, dummy_sample_deter
):
    config = dict(
        diffusers_test_schedule, final_sigmas_type="sigma_min", lower_order_final=False
    )
    config.update(overrides)
    result = _diffusers_loop(
        DPMSolverMultistepScheduler(**config), dummy_model, dummy_sample_deter
    )
    assert abs(result.mean() - expected_mean) < 1e-3


def test_diffusers_full_loop_with_noise(
    diffusers_test_schedule, dummy_model, dummy_sample_deter, dummy_noise_deter
):
    scheduler = DPMSolverMultistepScheduler(
        **diffusers_test_schedule, final_sigmas_type="sigma_min", lower_order_final=False
    )
    # diffusers starts at timesteps[5:] of 10 steps: strength 0.5.
    result = _diffusers_loop(
        scheduler, dummy_model, dummy_sample_deter, strength=0.5, noise=dummy_noise_deter
    )
    assert abs(result.sum() - 318.4111) < 1e-2
    assert abs(result.mean() - 0.4146) < 1e-3


def test_config_and_names():
    scheduler = DPMSolverMultistepScheduler(
        prediction_type="v_prediction", final_sigmas_type="sigma_min"
    )
    config = json.loads(json.dumps(scheduler.get_config()))
    rebuilt = DPMSolverMultistepScheduler.from_config(config)
    assert rebuilt.get_config() == scheduler.get_config()
    assert rebuilt.a1111_name == "DPM++ 2M"
    with pytest.raises(ValueError, match="final_sigmas_type"):
        DPMSolverMultistepScheduler(final_sigmas_type="one")
