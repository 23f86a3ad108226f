"""tiny-sd3 through the studio's pipeline: flow-matching Euler in the compiled loop, no stale schedule.

keras-hub's `StableDiffusion3TextToImage.generate()` on JAX keeps the sigmas
of its first call (2 steps, then 5 steps is not a fresh 5-step run); the
studio's `SamplingLoop` takes the schedule as data, so it must be.
"""

import keras
import numpy as np
import pytest
from keras import ops

from studio.errors import InvalidInputError
from studio.models.sd3 import SD3Backbone
from studio.pipelines import GuidedDenoiser, SamplingLoop, TextToImagePipeline
from studio.schedulers import FlowMatchEulerScheduler, get_scheduler

PROMPTS = ["a red circle", "a blue square"]
# As tests/models/sd3: building keras-hub's SD3 backbone under JAX takes about
# 70 s on 2 shared cores (7 s under TensorFlow), so .ci/run's JAX step leaves
# this module to `-m large`; all of it passed under JAX when written (2.5 min).
pytestmark = [pytest.mark.large] if keras.backend.backend() == "jax" else []


@pytest.fixture(scope="module")
def backbone():
    return SD3Backbone.from_preset("tiny-sd3")


def _inputs(backbone, steps, seed=0):
    rng = np.random.default_rng(seed)
    shape = (len(PROMPTS), *backbone.latent_shape(64, 64))
    scheduler = get_scheduler("euler", prediction_type="flow", **backbone.noise_schedule)
    scheduler.set_timesteps(steps)
    encode = lambda prompts: {  # noqa: E731
        key: ops.convert_to_numpy(value)
        for key, value in backbone.encode_text(backbone.tokenizer(prompts)).items()
    }
    return scheduler, {
        "latents": rng.standard_normal(shape).astype("float32"),
        "context": encode(PROMPTS),
        "unconditional_context": encode(["", ""]),
        "guidance_scale": np.array([4.5, 2.0], "float32"),
        "noise": rng.standard_normal((steps, *shape)).astype("float32"),
        "table": scheduler.step_table(),
    }


@pytest.fixture(scope="module")
def shared_loop(backbone):
    loop = SamplingLoop(backbone.denoiser)
    loop.compile(jit_compile=False)
    return loop


@pytest.fixture(scope="module")
def pipeline(backbone):
    return TextToImagePipeline(backbone)


def test_two_then_five_steps_equals_a_fresh_five_step_generation(backbone, pipeline):
    options = dict(guidance_scale=4.5, seed=7, sampler="euler")
    two = pipeline(PROMPTS[0], num_steps=2, **options)
    after = pipeline(PROMPTS[0], num_steps=5, **options)
    fresh = TextToImagePipeline(backbone)(PROMPTS[0], num_steps=5, **options)
    np.testing.assert_array_equal(after.images, fresh.images)
    assert np.abs(two.images.astype(int) - fresh.images.astype(int)).max() > 0


# The flow sampler's table rows are its steps (tests/schedulers) and the loop
# runs tables as the step-by-step loop (test_sampling_loop.py): this is both
# at once on the MMDiT, kept out of the default run for its 6 s.
@pytest.mark.large
def test_compiled_loop_is_the_step_by_step_flow_euler_loop(backbone, shared_loop):
    scheduler, inputs = _inputs(backbone, steps=4, seed=1)
    compiled = shared_loop.predict_on_batch(inputs)
    guided = GuidedDenoiser(backbone.denoiser)
    latents = inputs["latents"]
    reference = FlowMatchEulerScheduler(**backbone.noise_schedule)
    reference.set_timesteps(4)
    for timestep in reference.timesteps:
        velocity = guided(
            (latents, np.full((2,), timestep, "float32"), inputs["context"],
             inputs["unconditional_context"], inputs["guidance_scale"])
        )  # fmt: skip
        latents = ops.convert_to_numpy(reference.step(velocity, timestep, latents))
    np.testing.assert_allclose(compiled, latents, rtol=1e-5, atol=1e-5)
    assert np.abs(latents - inputs["latents"]).max() > 0.1


def test_pipeline_generates_tiny_sd3_images_with_euler_infotext(pipeline):
    result = pipeline(PROMPTS, num_steps=3, guidance_scale=4.5, seed=7, sampler="euler")
    again = pipeline(PROMPTS, num_steps=3, guidance_scale=4.5, seed=7, sampler="ddim")
    assert result.images.shape == (2, 64, 64, 3) and result.images.dtype == np.uint8
    # DDIM on a straight path is the flow Euler step: the same images.
    np.testing.assert_array_equal(result.images, again.images)
    assert result.parameters[0].sampler == "Euler"
    assert result.parameters[0].model == "tiny-sd3"
    with pytest.raises(InvalidInputError, match="flow-matching Euler"):
        pipeline(PROMPTS, num_steps=2, sampler="dpmpp_2m")
