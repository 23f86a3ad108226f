"""A fresh pipeline's first generation runs its sampling loop once.

Keras' `predict_on_batch` under JAX first runs the whole model eagerly if
any layer of it is not built, which for the sampling loop is a whole extra
generation, op by op (weightless layers such as `UpSampling2D` were built
only by a first call). Every family's networks are built from the start.
"""

import pytest

from studio.interop import load_backbone
from studio.pipelines import TextToImagePipeline


@pytest.mark.parametrize("preset", ["tiny", "tiny-sdxl", "tiny-sd3"])
def test_first_generation_runs_each_step_once(preset):
    pipeline = TextToImagePipeline(load_backbone(preset))
    unbuilt = [
        layer.name
        for model in (pipeline.sampling_loop, pipeline.latent_decoder)
        for layer in model._flatten_layers()
        if not layer.built
    ]
    assert unbuilt == []
    heard = []
    pipeline.sampling_loop.step_listener = heard.append
    pipeline("a circle", num_steps=3, seed=0)  # the preset's own size
    assert heard == [0, 1, 2]
