import json
import os

import h5py
import keras
import numpy as np
import pytest

from studio.errors import WeightsMismatchError, WeightsNotFoundError
from studio.models import (
    BACKBONE_PRESETS,
    COMPONENTS,
    CLIPTextEncoder,
    StableDiffusionBackbone,
    UNet,
    VAEDecoder,
    VAEEncoder,
)
from studio.models.legacy_h5_weights import load_legacy_h5_weights


def _write_legacy_h5(model, path):
    """Writes `model`'s weights as tf.keras' save_weights("*.h5") did."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, model)


def _weights_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


@pytest.fixture(scope="module")
def tiny():
    return StableDiffusionBackbone.from_preset("tiny")


def test_tiny_preset_components(tiny):
    assert isinstance(tiny.text_encoder, CLIPTextEncoder)
    assert isinstance(tiny.unet, UNet)
    assert isinstance(tiny.vae_encoder, VAEEncoder)
    assert isinstance(tiny.vae_decoder, VAEDecoder)
    assert list(tiny.components) == list(COMPONENTS)
    ids = tiny.tokenizer(["a photo of a cat"])
    assert ids.max() < tiny.text_encoder.vocabulary_size
    context = tiny.text_encoder(ids)
    assert context.shape == (1, 77, tiny.unet.context_dim)


def test_random_preset_is_the_same_model_every_time(tiny):
    again = StableDiffusionBackbone.from_preset("tiny")
    for name in COMPONENTS:
        assert _weights_equal(tiny.components[name], again.components[name])
    other = StableDiffusionBackbone.from_preset("tiny", seed=1)
    assert not _weights_equal(tiny.unet, other.unet)


def test_presets_are_plain_data():
    json.dumps(BACKBONE_PRESETS)
    for name, spec in BACKBONE_PRESETS.items():
        assert spec["description"]
        if spec["weights"]:
            assert set(spec["weights"]) == set(COMPONENTS)
            for entry in spec["weights"].values():
                assert entry["origin"].endswith(entry["file_name"])
                assert len(entry["file_hash"]) == 64


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Expected one of .*sd-v1.*Received: preset='sd-v3'"):
        StableDiffusionBackbone.from_preset("sd-v3")


def test_save_and_load_preset_folder(tiny, tmp_path):
    folder = tiny.save_to_preset(str(tmp_path / "my-model"))
    assert sorted(os.listdir(folder)) == sorted(
        ["backbone.json"] + [f"{name}.weights.h5" for name in COMPONENTS]
    )
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp")] == []
    loaded = StableDiffusionBackbone.from_preset(folder)
    assert loaded.name == "my-model"
    assert loaded.get_config() == tiny.get_config()
    for name in COMPONENTS:
        assert _weights_equal(tiny.components[name], loaded.components[name])
    ids = tiny.tokenizer(["a red circle"])
    np.testing.assert_array_equal(loaded.tokenizer(["a red circle"]), ids)


def test_save_preset_replaces_an_older_save(tiny, tmp_path):
    folder = str(tmp_path / "model")
    tiny.save_to_preset(folder)
    other = StableDiffusionBackbone.from_preset("tiny", seed=3)
    other.save_to_preset(folder)
    loaded = StableDiffusionBackbone.from_preset(folder)
    assert _weights_equal(loaded.unet, other.unet)


def test_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="no backbone.json"):
        StableDiffusionBackbone.from_preset(str(tmp_path))


def test_mixed_precision_policy(tmp_path):
    backbone = StableDiffusionBackbone.from_preset("tiny", dtype="mixed_bfloat16")
    for network in backbone.components.values():
        assert network.dtype_policy.name == "mixed_bfloat16"
    latents = np.zeros((1, 8, 8, 4), "float32")
    out = backbone.unet({"latents": latents, "timesteps": np.array([10]),
                         "context": np.zeros((1, 77, 32), "float32")})
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


# KerasCV publishes weights in the legacy `.h5` layout; these tests write that
# layout from our models and read it back by position.


def test_legacy_h5_round_trip(tiny, tmp_path):
    path = str(tmp_path / "unet.h5")
    _write_legacy_h5(tiny.unet, path)
    fresh = StableDiffusionBackbone.from_preset("tiny", seed=5).unet
    assert not _weights_equal(fresh, tiny.unet)
    load_legacy_h5_weights(fresh, path)
    assert _weights_equal(fresh, tiny.unet)


def test_legacy_h5_wrong_component_names_both_shapes(tiny, tmp_path):
    path = str(tmp_path / "decoder.h5")
    _write_legacy_h5(tiny.vae_decoder, path)
    with pytest.raises(WeightsMismatchError, match="decoder.h5 holds .* weights, but VAEEncoder"):
        load_legacy_h5_weights(tiny.vae_encoder, path)
    encoder = VAEEncoder(block_channels=[32, 32, 32, 32], layers_per_block=1, norm_groups=8)
    path = str(tmp_path / "encoder.h5")
    _write_legacy_h5(encoder, path)
    wider = VAEEncoder(block_channels=[32, 32, 32, 32], layers_per_block=1,
                       norm_groups=8, latent_channels=8)
    with pytest.raises(WeightsMismatchError, match=r"encoder.h5 does not fit .* has shape"):
        load_legacy_h5_weights(wider, path)


def test_corrupt_weight_file_names_the_file(tiny, tmp_path):
    path = str(tmp_path / "kcv_decoder.h5")
    _write_legacy_h5(tiny.vae_decoder, path)
    with open(path, "rb") as file:
        head = file.read(4096)
    with open(path, "wb") as file:
        file.write(head)
    before = tiny.vae_decoder.get_weights()
    with pytest.raises(WeightsMismatchError, match="kcv_decoder.h5 .*corrupt or truncated"):
        load_legacy_h5_weights(tiny.vae_decoder, path)
    assert all(np.array_equal(a, b) for a, b in zip(before, tiny.vae_decoder.get_weights()))


def test_missing_local_weights_name_the_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="expected the file kcv_encoder.h5"):
        StableDiffusionBackbone.from_preset("sd-v1", weights=str(tmp_path))


def test_offline_lists_every_missing_file(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsNotFoundError) as info:
        StableDiffusionBackbone.from_preset("sd-v2")
    message = str(info.value)
    for spec in BACKBONE_PRESETS["sd-v2"]["weights"].values():
        assert spec["file_name"] in message and spec["file_hash"] in message
    assert "--weights DIR" in message and "no network" in message
    assert "bpe_simple_vocab_16e6.txt.gz" in message


@pytest.mark.large
@pytest.mark.keras_cv
def test_loads_keras_cv_text_encoder_file(tmp_path):
    """A file written from KerasCV's own model loads into ours, same outputs."""
    if keras.config.backend() != "tensorflow":
        pytest.skip("keras_cv needs the TensorFlow backend")
    from keras_cv.models.stable_diffusion import TextEncoder

    reference = TextEncoder(77, download_weights=False)
    path = str(tmp_path / "kcv_encoder.h5")
    _write_legacy_h5(reference, path)
    spec = BACKBONE_PRESETS["sd-v1"]["text_encoder"]
    ours = CLIPTextEncoder(**spec["config"])
    load_legacy_h5_weights(ours, path)
    tokens = np.random.default_rng(0).integers(0, 49408, (2, 77)).astype("int32")
    positions = np.arange(77, dtype="int32")[None].repeat(2, 0)
    expected = np.asarray(reference({"tokens": tokens, "positions": positions}))
    actual = np.asarray(ours(tokens))
    assert np.abs(actual - expected).max() <= 1e-4 * np.abs(expected).max()
