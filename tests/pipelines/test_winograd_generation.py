"""The pipeline's Winograd switch: where it is on, the loop and the decoder use it; images stay."""

import keras
import numpy as np
import pytest

from studio.interop import load_backbone
from studio.models import winograd_convolution as winograd
from studio.pipelines import TextToImagePipeline


@pytest.fixture
def counted_winograd(monkeypatch):
    """Test-sized layers qualify; returns the list of traced Winograd calls."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "JAX_MIN_CHANNELS", 1)
    calls = []
    original = winograd.winograd_convolution

    def spy(images, kernel, output_tile):
        calls.append(tuple(images.shape))
        return original(images, kernel, output_tile)

    monkeypatch.setattr("studio.models.unet_conv2d.winograd_convolution", spy)
    return calls


@pytest.mark.parametrize("preset", ["tiny", "tiny-sdxl"])
def test_winograd_generation_draws_the_same_images(preset, counted_winograd):
    backbone = load_backbone(preset)
    arguments = dict(num_steps=4, seed=3, num_images_per_prompt=2, guidance_scale=5.0)

    direct = TextToImagePipeline(backbone, winograd=False)("a red circle", **arguments)
    assert counted_winograd == []

    fast = TextToImagePipeline(backbone, winograd=True)("a red circle", **arguments)
    # Traced in the UNet (latent-sized images) and in the decoder (pixels).
    height, width = fast.images.shape[1:3]
    traced_sizes = {shape[1:3] for shape in counted_winograd}
    assert any(size[0] < height for size in traced_sizes)
    assert (height, width) in traced_sizes

    # Float rounding of about 1e-5 per convolution, through the steps and
    # the decoder: at most a pixel level here and there.
    difference = np.abs(fast.images.astype(int) - direct.images.astype(int))
    assert difference.max() <= 2
    assert difference.mean() < 0.05
    assert [p.seed for p in fast.parameters] == [p.seed for p in direct.parameters]


def test_auto_follows_the_device_and_the_precision():
    on_cpu = keras.distribution.list_devices()[0].lower().startswith("cpu")
    assert TextToImagePipeline(load_backbone("tiny")).winograd is on_cpu
    half = load_backbone("tiny", dtype="mixed_float16")
    assert TextToImagePipeline(half).winograd is False
    pipeline = TextToImagePipeline(load_backbone("tiny"), winograd=False)
    assert pipeline.winograd is False
    assert pipeline.sampling_loop.winograd is pipeline.latent_decoder.winograd is False
    with pytest.raises(ValueError, match='winograd must be True, False or "auto"'):
        TextToImagePipeline(load_backbone("tiny"), winograd="yes")
