"""The compiled sampling loop: the step-by-step loop's images, no stale schedule.

`SamplingLoop` runs every step of a generation in one compiled call, with
the sampler's schedule passed in as a table. These tests compare it with a
reference loop written here from the samplers' public `step` (one guided
UNet call and one `scheduler.step` per timestep, in Python), for every
sampler, and check that a pipeline that ran 2 steps (or another sampler)
before gives the same 5-step images as a fresh pipeline. Backend-agnostic:
CI runs them under TensorFlow and JAX.
"""

import numpy as np
import pytest
from keras import ops

from studio.models import StableDiffusionBackbone
from studio.pipelines import GuidedDenoiser, SamplingLoop, TextToImagePipeline
from studio.schedulers import SCHEDULER_NAMES, get_scheduler

PROMPTS = ["a red circle", "a blue square"]


@pytest.fixture(scope="module")
def backbone():
    return StableDiffusionBackbone.from_preset("tiny")


def _inputs(backbone, scheduler, steps, seed=0):
    rng = np.random.default_rng(seed)
    shape = (len(PROMPTS), *backbone.latent_shape(32, 32))
    token_ids = backbone.tokenizer(PROMPTS)
    context = ops.convert_to_numpy(backbone.encode_text(token_ids)["context"])
    unconditional = ops.convert_to_numpy(
        backbone.encode_text(backbone.tokenizer(["", ""]))["context"]
    )
    scheduler.set_timesteps(steps)
    return {
        "latents": rng.standard_normal(shape).astype("float32")
        * np.float32(scheduler.init_noise_sigma),
        "context": context.astype("float32"),
        "unconditional_context": unconditional.astype("float32"),
        "guidance_scale": np.array([7.5, 3.0], "float32"),
        "noise": rng.standard_normal((steps, *shape)).astype("float32"),
        "table": scheduler.step_table(),
    }


@pytest.fixture(scope="module")
def guided_step(backbone):
    """One guided UNet evaluation per call, compiled: the step-by-step loop's unit."""
    denoiser = GuidedDenoiser(backbone.denoiser)
    denoiser.compile(jit_compile=False)
    return denoiser


@pytest.fixture(scope="module")
def shared_loop(backbone):
    """One compiled loop that every sampler's test runs through in turn."""
    loop = SamplingLoop(backbone.denoiser)
    loop.compile(jit_compile=False)
    return loop


def _reference_loop(guided_step, scheduler, inputs):
    """The step-by-step loop: Python drives every step through `scheduler.step`."""
    latents = inputs["latents"]
    for index, timestep in enumerate(scheduler.timesteps):
        model_input = ops.convert_to_numpy(scheduler.scale_model_input(latents, timestep))
        prediction = guided_step.predict_on_batch(
            (
                model_input,
                np.full((len(latents),), timestep, "float32"),
                inputs["context"],
                inputs["unconditional_context"],
                inputs["guidance_scale"],
            )
        )
        latents = ops.convert_to_numpy(
            scheduler.step(prediction, timestep, latents, noise=inputs["noise"][index])
        )
    return latents


@pytest.mark.parametrize("sampler", SCHEDULER_NAMES)
def test_compiled_loop_gives_the_step_by_step_latents_after_other_schedules(
        backbone, guided_step, shared_loop, sampler):
    # The shared loop already ran the other samplers' schedules (and its
    # compiled functions were traced with them); here it runs 2 steps, then 5.
    for steps in (2, 5):
        scheduler = get_scheduler(sampler)
        inputs = _inputs(backbone, scheduler, steps=steps)
        compiled = shared_loop.predict_on_batch(inputs)
        fresh_scheduler = get_scheduler(sampler)
        fresh_scheduler.set_timesteps(steps)
        expected = _reference_loop(guided_step, fresh_scheduler, inputs)
        assert compiled.shape == expected.shape
        # float32 rounding of the precomputed step coefficients only: the
        # random tiny UNet's latents reach |x| ~ 30, so relative to that.
        scale = np.abs(expected).max()
        np.testing.assert_allclose(compiled, expected, rtol=0, atol=1e-5 * scale)
        assert np.abs(expected - inputs["latents"]).max() > 0.1  # the loop did run


def test_two_then_five_steps_equals_a_fresh_five_step_run_bit_for_bit(backbone, shared_loop):
    sampler = "dpmpp_2m_karras"  # multistep history and its own timestep grid
    shared_loop.predict_on_batch(_inputs(backbone, get_scheduler(sampler), steps=2))
    after = shared_loop.predict_on_batch(_inputs(backbone, get_scheduler(sampler), steps=5))
    fresh = SamplingLoop(backbone.denoiser)
    fresh.compile(jit_compile=False)
    expected = fresh.predict_on_batch(_inputs(backbone, get_scheduler(sampler), steps=5))
    np.testing.assert_array_equal(after, expected)
    two = shared_loop.predict_on_batch(_inputs(backbone, get_scheduler(sampler), steps=2))
    assert np.abs(two - expected).max() > 0.1


def test_pipeline_images_follow_the_sampler_and_steps_of_each_call(backbone):
    pipeline = TextToImagePipeline(backbone)
    options = dict(seed=4, height=32, width=32)
    first = pipeline(PROMPTS, num_steps=3, sampler="ddim", **options)
    other = pipeline(PROMPTS, num_steps=3, sampler="euler", **options)
    again = pipeline(PROMPTS, num_steps=3, sampler="ddim", **options)
    np.testing.assert_array_equal(first.images, again.images)
    assert np.abs(first.images.astype(int) - other.images.astype(int)).max() > 0
