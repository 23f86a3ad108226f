"""`re_express_in_sdxl`: tiny-shapes' weights carry over into SDXL's wiring as the docstring says."""

import numpy as np
import pytest
from keras import ops

from studio.models import CLIPTextEncoder, StableDiffusionBackbone, UNet
from studio.models.presets import BACKBONE_PRESETS
from studio.models.sdxl import SDXLBackbone
from studio.trainers.base_model.sdxl_re_expression import re_express_in_sdxl

# The source's numerics (KerasCV's GroupNorm epsilon and tanh GELU, quick GELU
# in both encoders), so that the re-expressed networks compute exactly what
# the source does; the preset's own choices differ from them a little.
SOURCE_NUMERICS = {"resnet_norm_epsilon": 1e-5, "transformer_norm_epsilon": 1e-5,
                   "gelu_approximate": True}


@pytest.fixture(scope="module")
def pair():
    source = StableDiffusionBackbone.from_preset("tiny-shapes")
    spec = BACKBONE_PRESETS["tiny-shapes-xl"]
    target = SDXLBackbone(
        text_encoder=CLIPTextEncoder(**spec["text_encoder"]["config"]),
        text_encoder_2=CLIPTextEncoder(
            **dict(spec["text_encoder_2"]["config"], intermediate_activation="quick_gelu")),
        unet=UNet(**dict(spec["unet"]["config"], **SOURCE_NUMERICS)),
        vae_encoder=source.vae_encoder,
        vae_decoder=source.vae_decoder,
        tokenizer=source.tokenizer,
        tokenizer_2=source.tokenizer,
        latent_scale=source.latent_scale,
        image_size=source.image_size,
        noise_schedule=source.noise_schedule,
    )
    return source, re_express_in_sdxl(source, target)


def _ids(backbone):
    return np.asarray(backbone.tokenizer(["a small red circle on a white background", ""]))


def test_penultimate_states_are_the_source_states_before_its_final_norm(pair):
    source, target = pair
    ids = _ids(source)
    expected = ops.convert_to_numpy(source.encode_text(ids)["context"])
    for encoder in (target.text_encoder, target.text_encoder_2):
        outputs = encoder(ids)
        normed = ops.convert_to_numpy(source.text_encoder.final_layer_norm(outputs["hidden_states"]))
        np.testing.assert_allclose(normed, expected, atol=1e-5)
        # The identity last layer and projection: the pooled vector is the
        # source's end-token state.
        end = np.argmax(ids == target.text_encoder.end_token_id, axis=1)
        np.testing.assert_allclose(ops.convert_to_numpy(outputs["pooled"]),
                                   expected[np.arange(len(ids)), end], atol=1e-5)


def test_the_unet_on_equal_halves_of_the_context_is_the_source_unet(pair):
    source, target = pair
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(2, 8, 8, 4)).astype("float32")
    timesteps = np.array([10, 700])
    context = rng.normal(size=(2, 16, 64)).astype("float32")
    expected = ops.convert_to_numpy(source.denoise(latents, timesteps, {"context": context}))
    # The added conditioning starts silent: any pooled text and size ids.
    conditioning = {
        "context": np.concatenate([context, context], axis=-1),
        "text_embeds": rng.normal(size=(2, 64)).astype("float32"),
        "time_ids": np.tile(target.time_ids(48, 32)[None], (2, 1)),
    }
    actual = ops.convert_to_numpy(target.denoise(latents, timesteps, conditioning))
    np.testing.assert_allclose(actual, expected, atol=1e-4)
    # Both encoders contribute: another second half changes the prediction.
    conditioning["context"] = np.concatenate([context, 0 * context], axis=-1)
    changed = ops.convert_to_numpy(target.denoise(latents, timesteps, conditioning))
    assert np.abs(changed - expected).max() > 1e-3


def test_networks_that_do_not_correspond_are_refused():
    source = StableDiffusionBackbone.from_preset("tiny-shapes", load_weights=False)
    target = SDXLBackbone.from_preset("tiny-sdxl", load_weights=False)
    with pytest.raises(ValueError, match="one layer more"):
        re_express_in_sdxl(source, target)
