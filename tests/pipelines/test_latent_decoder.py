"""`LatentDecoder`: `decode_latents`, compiled; the decoder's weights are its state."""

import numpy as np
import pytest
from keras import ops

from studio.interop import load_backbone
from studio.pipelines import LatentDecoder


@pytest.mark.parametrize("preset", ["tiny", "tiny-sd3"])
def test_compiled_decoding_equals_the_backbones_and_follows_its_weights(preset):
    backbone = load_backbone(preset)
    decoder = LatentDecoder(backbone)
    decoder.compile(jit_compile="auto")
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((2, *backbone.latent_shape(32, 32))).astype("float32")

    compiled = decoder.predict_on_batch(latents)
    eager = ops.convert_to_numpy(backbone.decode_latents(latents))
    assert compiled.shape == eager.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(compiled, eager, rtol=0, atol=1e-4 * np.abs(eager).max())

    # New weights in the decoder reach the compiled call (they are its
    # state, not constants traced into it).
    kernel = backbone.vae_decoder.weights[0]
    kernel.assign(ops.convert_to_numpy(kernel) * 0.5)
    changed = decoder.predict_on_batch(latents)
    expected = ops.convert_to_numpy(backbone.decode_latents(latents))
    np.testing.assert_allclose(changed, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    assert np.abs(changed - compiled).max() > 1e-3
