"""Tests of DDPMObjective: latents from moments, noising, targets, weights (any backend)."""

import json

import keras
import numpy as np
import pytest

from studio.trainers.objectives import DDPMObjective

SD_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}
LATENT_SCALE = 0.18215


def alphas_cumprod():
    """SD's alphas_cumprod, written out from the formula."""
    betas = np.linspace(SD_SCHEDULE["beta_start"] ** 0.5, SD_SCHEDULE["beta_end"] ** 0.5, 1000) ** 2
    return np.cumprod(1.0 - betas)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


def objective(**kwargs):
    return DDPMObjective(latent_scale=LATENT_SCALE, noise_schedule=SD_SCHEDULE, **kwargs)


def clean_latents(seed=0, shape=(4, 8, 8, 4)):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def test_sample_latents_scales_mean_and_uses_the_variance():
    mean = np.random.default_rng(0).standard_normal((3, 8, 8, 4)).astype("float32")
    # A log-variance below the clamp range is clamped to -30: std ~ 3e-7.
    certain = np.concatenate([mean, np.full_like(mean, -100.0)], -1)
    latents = numpy(objective().sample_latents(certain, keras.random.SeedGenerator(1)))
    np.testing.assert_allclose(latents, mean * LATENT_SCALE, atol=1e-5)

    wide = np.concatenate([np.zeros_like(mean), np.full_like(mean, np.log(4.0))], -1)
    wide = np.repeat(wide, 20, axis=0)
    latents = numpy(objective().sample_latents(wide, keras.random.SeedGenerator(1)))
    # Standard deviation exp(0.5 * log 4) = 2, times the scale.
    assert latents.std() == pytest.approx(2.0 * LATENT_SCALE, rel=0.05)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_noisy_latents_and_target_follow_the_schedule(prediction_type):
    x0 = clean_latents()
    noisy, timesteps, target, weights = objective(prediction_type=prediction_type).noisy_latents(
        x0, keras.random.SeedGenerator(3)
    )
    noisy, target, t = numpy(noisy), numpy(target), numpy(timesteps).astype(int)
    a = alphas_cumprod()[t][:, None, None, None]
    if prediction_type == "epsilon":
        noise = target
    else:
        # v = sqrt(a) eps - sqrt(1 - a) x0  and  x_t = sqrt(a) x0 + sqrt(1 - a) eps
        # give eps = sqrt(1 - a) x_t + sqrt(a) v.
        noise = np.sqrt(1 - a) * noisy + np.sqrt(a) * target
        np.testing.assert_allclose(np.sqrt(a) * noisy - np.sqrt(1 - a) * target, x0, atol=1e-4)
    np.testing.assert_allclose(noisy, np.sqrt(a) * x0 + np.sqrt(1 - a) * noise, atol=1e-4)
    assert np.all((t >= 0) & (t < 1000))
    np.testing.assert_array_equal(numpy(weights), np.ones(len(x0)))


def test_draws_repeat_with_the_seed_and_advance_the_generator():
    x0 = clean_latents()
    first = objective().noisy_latents(x0, keras.random.SeedGenerator(7))
    again = objective().noisy_latents(x0, keras.random.SeedGenerator(7))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(numpy(a), numpy(b))
    generator = keras.random.SeedGenerator(7)
    objective().noisy_latents(x0, generator)
    later = objective().noisy_latents(x0, generator)
    assert not np.array_equal(numpy(first[2]), numpy(later[2]))


@pytest.mark.parametrize(
    "prediction_type, denominator",
    [("epsilon", lambda snr: snr), ("v_prediction", lambda snr: snr + 1.0)],
)
def test_min_snr_weights(prediction_type, denominator):
    timesteps = np.array([0, 10, 200, 500, 999], dtype="int32")
    gamma = 5.0
    a = alphas_cumprod()[timesteps]
    snr = a / (1 - a)
    expected = np.minimum(snr, gamma) / denominator(snr)
    weighting = objective(prediction_type=prediction_type, min_snr_gamma=gamma)
    weights = weighting.loss_weights(timesteps)
    np.testing.assert_allclose(numpy(weights), expected, rtol=1e-4)


def test_offset_noise_shifts_whole_channels():
    x0 = np.zeros((64, 8, 8, 4), "float32")
    _, _, plain, _ = objective().noisy_latents(x0, keras.random.SeedGenerator(0))
    _, _, offset, _ = objective(offset_noise=1.0).noisy_latents(x0, keras.random.SeedGenerator(0))
    # The per-image, per-channel mean of 64 unit normals has std 1/8; an
    # offset of one normal draw per channel makes it about 1.
    assert numpy(plain).mean(axis=(1, 2)).std() < 0.2
    assert numpy(offset).mean(axis=(1, 2)).std() > 0.7


def test_loss_is_the_weighted_mean_of_per_example_errors():
    rng = np.random.default_rng(0)
    prediction = rng.standard_normal((3, 4, 4, 2)).astype("float32")
    target = rng.standard_normal((3, 4, 4, 2)).astype("float32")
    weights = np.array([0.5, 1.0, 2.0], "float32")
    per_example = ((prediction - target) ** 2).reshape(3, -1).mean(-1)
    loss = DDPMObjective.loss(prediction, target, weights)
    assert float(numpy(loss)) == pytest.approx(float((per_example * weights).mean()), rel=1e-5)


def test_config_round_trips_through_json():
    original = objective(prediction_type="v_prediction", min_snr_gamma=5.0, offset_noise=0.05)
    config = json.loads(json.dumps(original.get_config()))
    assert DDPMObjective.from_config(config).get_config() == original.get_config()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_snr_gamma": 0.0}, "min_snr_gamma"),
        ({"offset_noise": -0.1}, "offset_noise"),
        ({"prediction_type": "sample"}, "prediction_type"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        objective(**kwargs)
