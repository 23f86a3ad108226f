"""`GuidedDenoiser` takes the backbone's conditioning dict; SD's bare context gives the same."""

import numpy as np

from studio.models import StableDiffusionBackbone
from studio.pipelines.guided_denoiser import GuidedDenoiser


def test_conditioning_dict_and_bare_context_give_identical_predictions():
    backbone = StableDiffusionBackbone.from_preset("tiny")
    denoiser = GuidedDenoiser(backbone.denoiser)
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((2, 8, 8, 4)).astype("float32")
    timesteps = np.array([10, 700], "int32")
    context = rng.standard_normal((2, 77, 32)).astype("float32")
    unconditional = rng.standard_normal((2, 77, 32)).astype("float32")
    scales = np.array([7.5, 3.0], "float32")
    bare = denoiser((latents, timesteps, context, unconditional, scales))
    wrapped = denoiser(
        (latents, timesteps, {"context": context}, {"context": unconditional}, scales)
    )
    np.testing.assert_array_equal(np.asarray(wrapped), np.asarray(bare))
    # And both are the guidance mix of the UNet's two predictions.
    conditional = backbone.denoise(latents, timesteps, {"context": context})
    plain = backbone.denoise(latents, timesteps, {"context": unconditional})
    expected = plain + scales[:, None, None, None] * (conditional - plain)
    # The guided call runs one batch of 4 where these ran two of 2: XLA's
    # round-off differs by ~1e-6, which a guidance scale of 7.5 multiplies.
    np.testing.assert_allclose(np.asarray(bare), np.asarray(expected), atol=1e-4)
