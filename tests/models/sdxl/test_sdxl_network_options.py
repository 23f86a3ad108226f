"""SDXL's options of the shared networks: configs round-trip, bad values are named."""

import json

import numpy as np
import pytest

from studio.models import CLIPTextEncoder, UNet

SDXL_STYLE_UNET = {
    "block_channels": [16, 32],
    "layers_per_block": 1,
    "attention_levels": [False, True],
    "context_dim": 24,
    "num_heads": 2,
    "transformer_projection": "linear",
    "transformer_depth": [1, 3],
    "norm_groups": 8,
    "pooled_text_dim": 8,
    "time_ids_dim": 4,
    "num_time_ids": 6,
}
POOLED_ENCODER = {
    "vocabulary_size": 40,
    "sequence_length": 8,
    "hidden_dim": 16,
    "num_layers": 2,
    "num_heads": 2,
    "intermediate_dim": 32,
    "hidden_states_layer": "penultimate",
    "return_pooled": True,
    "projection_dim": 8,
    "end_token_id": 39,
}


def _round_trip(network):
    config = json.loads(json.dumps(network.get_config()))
    rebuilt = type(network).from_config(config)
    rebuilt.set_weights(network.get_weights())
    return rebuilt


def test_unet_per_level_depth_and_added_conditioning_round_trip():
    unet = UNet(**SDXL_STYLE_UNET)
    assert unet.get_layer("down1_attention0").depth == 3
    assert unet.get_layer("mid_attention").depth == 3
    rng = np.random.default_rng(0)
    inputs = {
        "latents": rng.standard_normal((1, 4, 4, 4)).astype("float32"),
        "timesteps": np.array([5], "int32"),
        "context": rng.standard_normal((1, 3, 24)).astype("float32"),
        "text_embeds": rng.standard_normal((1, 8)).astype("float32"),
        "time_ids": np.array([[64, 64, 0, 0, 64, 64]], "float32"),
    }
    np.testing.assert_array_equal(_round_trip(unet)(inputs), unet(inputs))


def test_clip_pooled_projection_round_trip_and_token_vectors():
    encoder = CLIPTextEncoder(**POOLED_ENCODER)
    ids = np.array([[38, 5, 6, 39, 39, 39, 39, 39]], "int32")
    outputs = encoder(ids)
    assert outputs["hidden_states"].shape == (1, 8, 16) and outputs["pooled"].shape == (1, 8)
    again = _round_trip(encoder)(ids)
    for name in outputs:
        np.testing.assert_array_equal(again[name], outputs[name])
    vectors = encoder.encode_token_embeddings(encoder.token_embedding(ids), ids)
    np.testing.assert_allclose(vectors["pooled"], outputs["pooled"], atol=1e-6)
    with pytest.raises(ValueError, match="token_ids"):
        encoder.encode_token_embeddings(encoder.token_embedding(ids))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"transformer_depth": [1]}, "transformer_depth"),
        ({"transformer_depth": [1, 0]}, "transformer_depth"),
    ],
)
def test_unet_bad_depths_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        UNet(**{**SDXL_STYLE_UNET, **changes})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"hidden_states_layer": "last"}, "hidden_states_layer"),
        ({"return_pooled": False, "projection_dim": None}, "return_pooled=True"),
        ({"return_pooled": False, "hidden_states_layer": "final"}, "projection_dim"),
    ],
)
def test_clip_bad_output_options_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        CLIPTextEncoder(**{**POOLED_ENCODER, **changes})
