import json

import keras
import numpy as np
import pytest

from studio.schedulers import NoiseSchedule

SHAPE = (3, 4, 4, 2)


def test_scaled_linear_betas_match_formula(sd_alphas_cumprod):
    schedule = NoiseSchedule()
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    np.testing.assert_allclose(schedule.betas, betas, rtol=1e-12)
    np.testing.assert_allclose(schedule.alphas_cumprod, sd_alphas_cumprod, rtol=1e-12)


def test_linear_betas_match_formula():
    schedule = NoiseSchedule(beta_start=0.0001, beta_end=0.02, beta_schedule="linear")
    np.testing.assert_allclose(schedule.betas, np.linspace(0.0001, 0.02, 1000), rtol=1e-12)
    assert schedule.alphas_cumprod[0] == pytest.approx(0.9999)


def test_stable_diffusion_published_noise_levels():
    alphas = NoiseSchedule().alphas_cumprod
    # Lin et al. 2023 ("Common Diffusion Noise Schedules and Sample Steps are
    # Flawed"), Table 1: SD's terminal sqrt(alpha_bar) is 0.068265.
    assert np.sqrt(alphas[-1]) == pytest.approx(0.068265, abs=1e-6)
    # k-diffusion / A1111 report SD's sigma range as 0.0292 .. 14.6146.
    sigmas = np.sqrt((1 - alphas) / alphas)
    assert sigmas[-1] == pytest.approx(14.6146, abs=1e-4)
    assert sigmas[0] == pytest.approx(0.0292, abs=1e-4)


def test_add_noise_per_sample_timesteps(rng, sd_alphas_cumprod, to_numpy):
    samples = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    timesteps = np.array([0, 500, 999])
    noisy = to_numpy(NoiseSchedule().add_noise(samples, noise, timesteps))
    a = sd_alphas_cumprod[timesteps][:, None, None, None]
    expected = np.sqrt(a) * samples + np.sqrt(1 - a) * noise
    np.testing.assert_allclose(noisy, expected, rtol=1e-5, atol=1e-6)


def test_add_noise_scalar_timestep(rng, sd_alphas_cumprod, to_numpy):
    samples = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    noisy = to_numpy(NoiseSchedule().add_noise(samples, noise, 250))
    a = sd_alphas_cumprod[250]
    np.testing.assert_allclose(
        noisy, np.sqrt(a) * samples + np.sqrt(1 - a) * noise, rtol=1e-5, atol=1e-6
    )


def test_velocity_identities(rng, to_numpy, sd_alphas_cumprod):
    schedule = NoiseSchedule(prediction_type="v_prediction")
    samples = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    timesteps = np.array([10, 400, 990])
    noisy = to_numpy(schedule.add_noise(samples, noise, timesteps))
    velocity = to_numpy(schedule.get_velocity(samples, noise, timesteps))
    a = sd_alphas_cumprod[timesteps][:, None, None, None]
    # x_0 = sqrt(a) x_t - sqrt(1 - a) v and epsilon = sqrt(a) v + sqrt(1 - a) x_t.
    np.testing.assert_allclose(
        np.sqrt(a) * noisy - np.sqrt(1 - a) * velocity, samples, atol=2e-5
    )
    np.testing.assert_allclose(
        np.sqrt(a) * velocity + np.sqrt(1 - a) * noisy, noise, atol=2e-5
    )
    target = to_numpy(schedule.training_target(samples, noise, timesteps))
    np.testing.assert_allclose(target, velocity)


def test_epsilon_training_target_is_the_noise(rng, to_numpy):
    samples = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    target = to_numpy(NoiseSchedule().training_target(samples, noise, np.array([1, 2, 3])))
    np.testing.assert_array_equal(target, noise)


def test_snr(sd_alphas_cumprod, to_numpy):
    timesteps = np.array([0, 1, 499, 999])
    snr = to_numpy(NoiseSchedule().snr(timesteps))
    a = sd_alphas_cumprod[timesteps]
    np.testing.assert_allclose(snr, a / (1 - a), rtol=1e-6)
    # Lin et al. 2023, Table 1: SD's terminal SNR is 0.004682.
    assert snr[-1] == pytest.approx(0.004682, abs=1e-6)
    assert np.all(np.diff(to_numpy(NoiseSchedule().snr(np.arange(1000)))) < 0)


def test_float16_inputs_keep_their_dtype(rng, sd_alphas_cumprod, to_numpy):
    samples = rng.standard_normal(SHAPE).astype("float16")
    noise = rng.standard_normal(SHAPE).astype("float16")
    noisy = NoiseSchedule().add_noise(samples, noise, np.array([5, 6, 7]))
    assert keras.backend.standardize_dtype(noisy.dtype) == "float16"
    a = sd_alphas_cumprod[[5, 6, 7]][:, None, None, None]
    expected = np.sqrt(a) * samples + np.sqrt(1 - a) * noise
    np.testing.assert_allclose(to_numpy(noisy), expected, rtol=2e-3, atol=2e-3)


def test_add_noise_with_traced_timesteps(rng, compile_function, to_numpy):
    schedule = NoiseSchedule(prediction_type="v_prediction")
    samples = rng.standard_normal(SHAPE).astype("float32")
    noise = rng.standard_normal(SHAPE).astype("float32")
    timesteps = np.array([3, 300, 900], dtype="int32")

    def train_inputs(samples, noise, timesteps):
        return (
            schedule.add_noise(samples, noise, timesteps),
            schedule.training_target(samples, noise, timesteps),
            schedule.snr(timesteps),
        )

    compiled = compile_function(train_inputs)(samples, noise, timesteps)
    eager = train_inputs(samples, noise, timesteps)
    for got, want in zip(compiled, eager):
        np.testing.assert_allclose(to_numpy(got), to_numpy(want), rtol=1e-6, atol=1e-6)


def test_config_round_trip():
    schedule = NoiseSchedule(
        num_train_timesteps=500, beta_schedule="linear", prediction_type="v_prediction"
    )
    config = json.loads(json.dumps(schedule.get_config()))
    rebuilt = NoiseSchedule.from_config(config)
    assert rebuilt.get_config() == schedule.get_config()
    np.testing.assert_array_equal(rebuilt.alphas_cumprod, schedule.alphas_cumprod)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"beta_schedule": "cosine"},
        {"prediction_type": "sample"},
        {"num_train_timesteps": 0},
        {"beta_start": 0.02, "beta_end": 0.01},
    ],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        NoiseSchedule(**kwargs)
