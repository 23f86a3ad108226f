"""Tests of CLIPTextEncoder: tiny configs everywhere, KerasCV parity at full size."""

import json

import keras
import numpy as np
import pytest

from studio.models.clip_text_encoder import CLIPTextEncoder

TINY_CONFIG = {
    "vocabulary_size": 600,
    "sequence_length": 77,
    "hidden_dim": 32,
    "num_layers": 2,
    "num_heads": 2,
    "intermediate_dim": 128,
}
SD_V1_CONFIG = {
    "vocabulary_size": 49408,
    "sequence_length": 77,
    "hidden_dim": 768,
    "num_layers": 12,
    "num_heads": 12,
    "intermediate_dim": 3072,
    "intermediate_activation": "quick_gelu",
    "layer_norm_epsilon": 1e-5,
}
SD_V2_CONFIG = {
    "vocabulary_size": 49408,
    "sequence_length": 77,
    "hidden_dim": 1024,
    "num_layers": 23,
    "num_heads": 16,
    "intermediate_dim": 4096,
    # KerasCV's TextEncoderV2 computes the tanh form of GELU.
    "intermediate_activation": "gelu_approximate",
    "layer_norm_epsilon": 1e-5,
}
# Relative tolerance of the float32 comparisons with KerasCV.
PARITY_TOLERANCE = 1e-4

skip_unless_tensorflow = pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="keras_cv runs on the TensorFlow backend only",
)


def random_token_ids(batch_size, length, vocabulary_size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocabulary_size, (batch_size, length)).astype("int32")


def test_output_is_float32_hidden_states_per_token():
    encoder = CLIPTextEncoder(**TINY_CONFIG)
    outputs = encoder(random_token_ids(2, 77, 600))
    assert tuple(outputs.shape) == (2, 77, 32)
    assert keras.backend.standardize_dtype(outputs.dtype) == "float32"


def test_accepts_sequences_shorter_than_sequence_length():
    encoder = CLIPTextEncoder(**TINY_CONFIG)
    assert tuple(encoder(random_token_ids(1, 5, 600)).shape) == (1, 5, 32)


def test_rejects_sequences_longer_than_sequence_length():
    encoder = CLIPTextEncoder(**{**TINY_CONFIG, "sequence_length": 8})
    with pytest.raises(ValueError, match="sequence_length"):
        encoder(random_token_ids(1, 9, 600))


def test_attention_is_causal():
    encoder = CLIPTextEncoder(**TINY_CONFIG)
    token_ids = random_token_ids(1, 77, 600)
    changed = token_ids.copy()
    changed[0, 40:] = (changed[0, 40:] + 1) % 600
    original = keras.ops.convert_to_numpy(encoder(token_ids))
    edited = keras.ops.convert_to_numpy(encoder(changed))
    np.testing.assert_allclose(edited[:, :40], original[:, :40], atol=1e-6)
    assert not np.allclose(edited[:, 40:], original[:, 40:], atol=1e-3)


def test_output_depends_on_token_positions():
    encoder = CLIPTextEncoder(**TINY_CONFIG)
    # The same token everywhere: only the position embeddings differ.
    outputs = keras.ops.convert_to_numpy(encoder(np.full((1, 77), 7, "int32")))
    assert not np.allclose(outputs[0, 0], outputs[0, 1], atol=1e-3)


def test_encode_token_embeddings_equals_calling_on_ids():
    encoder = CLIPTextEncoder(**TINY_CONFIG)
    token_ids = random_token_ids(2, 77, 600)
    assert isinstance(encoder.token_embedding, keras.layers.Embedding)
    assert encoder.token_embedding.input_dim == 600
    from_ids = encoder(token_ids)
    from_vectors = encoder.encode_token_embeddings(
        encoder.token_embedding(token_ids)
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(from_vectors),
        keras.ops.convert_to_numpy(from_ids),
        rtol=1e-6,
        atol=1e-6,
    )


def test_encode_token_embeddings_uses_the_given_vectors():
    encoder = CLIPTextEncoder(**TINY_CONFIG)
    token_ids = random_token_ids(1, 77, 600)
    vectors = keras.ops.convert_to_numpy(encoder.token_embedding(token_ids))
    replaced = vectors.copy()
    replaced[0, 3] = np.random.default_rng(1).normal(size=32)
    original = keras.ops.convert_to_numpy(encoder.encode_token_embeddings(vectors))
    edited = keras.ops.convert_to_numpy(encoder.encode_token_embeddings(replaced))
    np.testing.assert_allclose(edited[:, :3], original[:, :3], atol=1e-6)
    assert not np.allclose(edited[:, 3:], original[:, 3:], atol=1e-3)


def test_config_round_trips_through_json():
    encoder = CLIPTextEncoder(
        **{**TINY_CONFIG, "intermediate_activation": "gelu"}, name="text"
    )
    config = json.loads(json.dumps(encoder.get_config()))
    for key, value in TINY_CONFIG.items():
        assert config[key] == value
    assert config["intermediate_activation"] == "gelu"
    rebuilt = CLIPTextEncoder.from_config(config)
    assert rebuilt.get_config() == encoder.get_config()
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in encoder.weights]


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_half_and_returns_float32(policy):
    encoder = CLIPTextEncoder(**TINY_CONFIG, dtype=policy)
    layers = [
        layer
        for layer in encoder._flatten_layers(include_self=False)
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    assert layers and all(layer.dtype_policy.name == policy for layer in layers)
    assert all(
        keras.backend.standardize_dtype(w.dtype) == "float32"
        for w in encoder.weights
    )
    outputs = encoder(random_token_ids(1, 77, 600))
    assert keras.backend.standardize_dtype(outputs.dtype) == "float32"
    assert encoder.get_config()["dtype"] == policy


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match="intermediate_activation"):
        CLIPTextEncoder(**TINY_CONFIG, intermediate_activation="relu6")


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="num_heads"):
        CLIPTextEncoder(**{**TINY_CONFIG, "num_heads": 3})


def assert_matches_keras_cv(config, keras_cv_encoder):
    encoder = CLIPTextEncoder(**config)
    assert [tuple(w.shape) for w in encoder.weights] == [
        tuple(w.shape) for w in keras_cv_encoder.weights
    ]
    encoder.set_weights(keras_cv_encoder.get_weights())
    token_ids = random_token_ids(2, 77, config["vocabulary_size"])
    positions = np.tile(np.arange(77, dtype="int32"), (2, 1))
    expected = keras.ops.convert_to_numpy(
        keras_cv_encoder({"tokens": token_ids, "positions": positions})
    )
    actual = keras.ops.convert_to_numpy(encoder(token_ids))
    assert np.max(np.abs(actual - expected)) <= PARITY_TOLERANCE * np.max(
        np.abs(expected)
    )


@pytest.mark.large
@pytest.mark.keras_cv
@skip_unless_tensorflow
def test_sd_v1_config_matches_keras_cv_text_encoder():
    from keras_cv.models.stable_diffusion import TextEncoder

    assert_matches_keras_cv(SD_V1_CONFIG, TextEncoder(77, download_weights=False))


@pytest.mark.large
@pytest.mark.keras_cv
@skip_unless_tensorflow
def test_sd_v2_config_matches_keras_cv_text_encoder_v2():
    from keras_cv.models.stable_diffusion import TextEncoderV2

    assert_matches_keras_cv(SD_V2_CONFIG, TextEncoderV2(77, download_weights=False))
