"""Acceptance 1 (tiny): the studio's SDXL networks compute what diffusers' and transformers' do.

The reference is a random tiny `StableDiffusionXLPipeline` saved as a
folder (tests/conftest.py's `sdxl_reference`); the studio imports it
through its config translation and weight-name tables
(`studio.interop`), so every weight reaches the studio through them.
Each network is compared on the same inputs, to 1e-4 relative to the
output's largest magnitude.
"""

import numpy as np
import pytest
from keras import ops

RELATIVE_TOLERANCE = 1e-4


def _relative_error(actual, expected):
    actual, expected = np.asarray(actual, "float64"), np.asarray(expected, "float64")
    assert actual.shape == expected.shape
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def _nchw(array):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(array).transpose(0, 3, 1, 2)))


def _nhwc(tensor):
    return tensor.detach().numpy().transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def token_ids(sdxl_reference):
    """Two prompts' ids from the reference's own (transformers) tokenizers."""
    prompts = ["a photo of a cat", "an oil painting of a red fox in the snow"]
    pipeline = sdxl_reference.pipeline
    return {
        name: getattr(pipeline, name)(
            prompts, padding="max_length", max_length=77, truncation=True, return_tensors="np"
        ).input_ids.astype("int32")
        for name in ("tokenizer", "tokenizer_2")
    }


def test_the_tokenizers_agree_and_bigG_ids_are_derived_from_the_first(sdxl_imported, token_ids):
    prompts = ["a photo of a cat", "an oil painting of a red fox in the snow"]
    ids = sdxl_imported.tokenizer(prompts)
    np.testing.assert_array_equal(ids, token_ids["tokenizer"])
    np.testing.assert_array_equal(sdxl_imported.tokenizer_2(prompts), token_ids["tokenizer_2"])
    _, derived = sdxl_imported._encoder_token_ids(ids)
    np.testing.assert_array_equal(ops.convert_to_numpy(derived), token_ids["tokenizer_2"])


def test_clip_l_penultimate_states(sdxl_reference, sdxl_imported, token_ids):
    import torch

    ids = token_ids["tokenizer"]
    with torch.no_grad():
        expected = sdxl_reference.text_encoder(
            torch.from_numpy(ids).long(), output_hidden_states=True
        )
    ours = sdxl_imported.text_encoder(ids)
    error = _relative_error(ours["hidden_states"], expected.hidden_states[-2].numpy())
    assert error <= RELATIVE_TOLERANCE
    assert _relative_error(ours["pooled"], expected.pooler_output.numpy()) <= RELATIVE_TOLERANCE


def test_open_clip_big_g_penultimate_states_and_pooled_projection(
    sdxl_reference, sdxl_imported, token_ids
):
    import torch

    ids = token_ids["tokenizer_2"]
    with torch.no_grad():
        expected = sdxl_reference.text_encoder_2(
            torch.from_numpy(ids).long(), output_hidden_states=True
        )
    ours = sdxl_imported.text_encoder_2(ids)
    error = _relative_error(ours["hidden_states"], expected.hidden_states[-2].numpy())
    assert error <= RELATIVE_TOLERANCE
    assert _relative_error(ours["pooled"], expected.text_embeds.numpy()) <= RELATIVE_TOLERANCE
    # Not the last layer's states: the penultimate are what SDXL reads.
    assert _relative_error(ours["hidden_states"], expected.hidden_states[-1].numpy()) > 1e-2


def test_encode_text_is_diffusers_encode_prompt(sdxl_reference, sdxl_imported):
    """The backbone's conditioning equals `StableDiffusionXLPipeline.encode_prompt`'s."""
    prompts = ["a photo of a cat", "a watercolour of a lighthouse"]
    embeds, _, pooled, _ = sdxl_reference.pipeline.encode_prompt(
        prompts, device="cpu", do_classifier_free_guidance=False
    )
    conditioning = sdxl_imported.encode_text(sdxl_imported.tokenizer(prompts))
    assert _relative_error(conditioning["context"], embeds.detach().numpy()) <= RELATIVE_TOLERANCE
    assert _relative_error(conditioning["text_embeds"], pooled.detach().numpy()) <= RELATIVE_TOLERANCE
    size = sdxl_imported.image_size
    np.testing.assert_array_equal(
        ops.convert_to_numpy(conditioning["time_ids"]), [[size, size, 0, 0, size, size]] * 2
    )


def test_unet_with_added_text_time_conditioning(sdxl_reference, sdxl_imported):
    import torch

    sizes = sdxl_reference.sizes
    rng = np.random.default_rng(3)
    latents = rng.standard_normal((2, 8, 8, 4)).astype("float32")
    timesteps = np.array([10, 999], "int32")
    context = rng.standard_normal((2, 77, sizes["clip_l_width"] + sizes["clip_g_width"]))
    context = context.astype("float32")
    text_embeds = rng.standard_normal((2, sizes["pooled_width"])).astype("float32")
    time_ids = np.array([[1024, 1024, 0, 0, 1024, 1024], [512, 768, 16, 32, 1024, 960]], "float32")
    with torch.no_grad():
        expected = sdxl_reference.unet(
            _nchw(latents),
            torch.from_numpy(timesteps).long(),
            torch.from_numpy(context),
            added_cond_kwargs={
                "text_embeds": torch.from_numpy(text_embeds),
                "time_ids": torch.from_numpy(time_ids),
            },
        ).sample
    conditioning = {"context": context, "text_embeds": text_embeds, "time_ids": time_ids}
    ours = sdxl_imported.denoise(latents, timesteps, conditioning)
    assert _relative_error(ours, _nhwc(expected)) <= RELATIVE_TOLERANCE
    # The ids matter: other sizes give another prediction.
    other = sdxl_imported.denoise(latents, timesteps, {**conditioning, "time_ids": time_ids[::-1]})
    assert _relative_error(other, _nhwc(expected)) > 1e-3


def test_vae_encoder_and_decoder(sdxl_reference, sdxl_imported):
    import torch

    rng = np.random.default_rng(4)
    images = rng.uniform(-1, 1, (2, 16, 16, 3)).astype("float32")
    latents = rng.standard_normal((2, 8, 8, 4)).astype("float32")
    vae = sdxl_reference.vae
    with torch.no_grad():
        moments = _nhwc(vae.quant_conv(vae.encoder(_nchw(images))))
        decoded = _nhwc(vae.decode(_nchw(latents) / vae.config.scaling_factor).sample)
    assert _relative_error(sdxl_imported.encode_moments(images), moments) <= RELATIVE_TOLERANCE
    assert _relative_error(sdxl_imported.decode_latents(latents), decoded) <= RELATIVE_TOLERANCE
    assert sdxl_imported.latent_scale == pytest.approx(0.13025)
