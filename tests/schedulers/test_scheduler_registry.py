import json

import numpy as np
import pytest

from studio.models.presets import SD_NOISE_SCHEDULE
from studio.schedulers import (
    A1111_SAMPLER_NAMES,
    SCHEDULER_NAMES,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    get_scheduler,
    scheduler_short_name,
)

SHAPE = (2, 8, 8, 4)


@pytest.mark.parametrize(
    "name, cls, a1111_name",
    [
        ("ddim", DDIMScheduler, "DDIM"),
        ("euler", EulerDiscreteScheduler, "Euler"),
        ("euler_a", EulerDiscreteScheduler, "Euler a"),
        ("dpmpp_2m", DPMSolverMultistepScheduler, "DPM++ 2M"),
        ("dpmpp_2m_karras", DPMSolverMultistepScheduler, "DPM++ 2M Karras"),
    ],
)
def test_short_and_a1111_names(name, cls, a1111_name):
    for alias in (name, a1111_name, a1111_name.upper()):
        scheduler = get_scheduler(alias)
        assert type(scheduler) is cls
        assert scheduler.a1111_name == a1111_name
    assert scheduler_short_name(a1111_name) == name
    assert name in SCHEDULER_NAMES and a1111_name in A1111_SAMPLER_NAMES


def test_kwargs_reach_the_scheduler():
    scheduler = get_scheduler(
        "Euler a", prediction_type="v_prediction", **SD_NOISE_SCHEDULE
    )
    config = scheduler.get_config()
    assert config["prediction_type"] == "v_prediction"
    assert config["ancestral"] is True
    assert get_scheduler("ddim", eta=0.5).eta == 0.5


def test_bad_names_and_contradictions_raise():
    with pytest.raises(ValueError, match="Received: name='plms'"):
        get_scheduler("plms")
    with pytest.raises(ValueError, match="ancestral=False"):
        get_scheduler("euler_a", ancestral=False)


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_config_round_trips_through_json(name):
    scheduler = get_scheduler(name, prediction_type="v_prediction")
    config = json.loads(json.dumps(scheduler.get_config()))
    rebuilt = type(scheduler).from_config(config)
    assert rebuilt.get_config() == scheduler.get_config()
    assert rebuilt.a1111_name == scheduler.a1111_name


class Oracle:
    """A UNet that knows the clean sample: exact epsilon or v for its input."""

    def __init__(self, alphas_cumprod, clean, prediction_type):
        self.alphas_cumprod = alphas_cumprod
        self.clean = clean.astype(np.float64)
        self.prediction_type = prediction_type
        self.last_noise = None

    def __call__(self, model_input, timestep):
        a = self.alphas_cumprod[int(timestep)]
        noise = (model_input - np.sqrt(a) * self.clean) / np.sqrt(1 - a)
        self.last_noise = noise
        if self.prediction_type == "epsilon":
            return noise.astype("float32")
        return (np.sqrt(a) * noise - np.sqrt(1 - a) * self.clean).astype("float32")

    def expected_end(self, name):
        if name != "ddim":
            return self.clean
        # DDIM's last step lands on alphas_cumprod[0] (SD's
        # set_alpha_to_one=False), the noise level of t=0; the others on sigma=0.
        a0 = self.alphas_cumprod[0]
        return np.sqrt(a0) * self.clean + np.sqrt(1 - a0) * self.last_noise


def _sample(scheduler, model, latents, rng, to_numpy):
    # The same loop as TextToImagePipeline: any sampler, one code path.
    for timestep in scheduler.timesteps:
        model_input = to_numpy(scheduler.scale_model_input(latents, timestep))
        noise = rng.standard_normal(SHAPE).astype("float32")
        latents = to_numpy(
            scheduler.step(model(model_input, timestep), int(timestep), latents, noise=noise)
        )
    return latents


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("name", ["ddim", "euler", "euler_a", "dpmpp_2m"])
def test_sampling_with_an_exact_model_ends_on_the_clean_sample(
    name, prediction_type, sd_alphas_cumprod, rng, to_numpy
):
    scheduler = get_scheduler(name, prediction_type=prediction_type, **SD_NOISE_SCHEDULE)
    clean = rng.standard_normal(SHAPE).astype("float32")
    model = Oracle(sd_alphas_cumprod, clean, prediction_type)
    scheduler.set_timesteps(12)
    latents = rng.standard_normal(SHAPE).astype("float32") * scheduler.init_noise_sigma
    latents = _sample(scheduler, model, latents, rng, to_numpy)
    np.testing.assert_allclose(latents, model.expected_end(name), atol=2e-3)


@pytest.mark.parametrize("name", ["ddim", "euler", "euler_a", "dpmpp_2m"])
def test_image_to_image_start(name, sd_alphas_cumprod, rng, to_numpy):
    scheduler = get_scheduler(name, **SD_NOISE_SCHEDULE)
    scheduler.set_timesteps(20, strength=0.6)
    assert len(scheduler.timesteps) == 12
    clean = rng.standard_normal(SHAPE).astype("float32")
    start = np.full((SHAPE[0],), int(scheduler.timesteps[0]))
    noisy = scheduler.add_noise(clean, rng.standard_normal(SHAPE).astype("float32"), start)
    model = Oracle(sd_alphas_cumprod, clean, "epsilon")
    latents = _sample(scheduler, model, to_numpy(noisy), rng, to_numpy)
    np.testing.assert_allclose(latents, model.expected_end(name), atol=2e-3)
