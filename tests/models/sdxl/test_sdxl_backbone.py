"""The SDXL backbone on the seam: presets, conditioning, token lookups, saving."""

import json

import numpy as np
import pytest
from keras import ops

from studio.errors import WeightsNotFoundError


@pytest.fixture(scope="module")
def backbone():
    from studio.interop import load_backbone

    return load_backbone("tiny-sdxl")


def _numpy(conditioning):
    return {name: ops.convert_to_numpy(value) for name, value in conditioning.items()}


def test_tiny_sdxl_is_the_sdxl_family_with_sdxl_conditioning(backbone):
    from studio.models import FAMILIES, family_of

    assert family_of("tiny-sdxl") == "sdxl" and type(backbone) is FAMILIES["sdxl"]
    assert backbone.latent_scale == pytest.approx(0.13025)
    conditioning = _numpy(backbone.encode_text(backbone.tokenizer(["a cat", "a dog"])))
    assert conditioning["context"].shape == (2, 77, 32 + 64)
    assert conditioning["text_embeds"].shape == (2, 32)
    np.testing.assert_array_equal(conditioning["time_ids"], [[64, 64, 0, 0, 64, 64]] * 2)
    assert backbone.objective["type"] == "ddpm"
    prediction = backbone.denoise(
        np.zeros((2, 8, 8, 4), "float32"), np.array([1, 999], "int32"), conditioning
    )
    assert prediction.shape == (2, 8, 8, 4)


def test_big_g_reads_its_own_padding(backbone):
    ids = backbone.tokenizer(["a cat"])
    derived = {"clip_l": ids, "clip_g": backbone.tokenizer_2(["a cat"])}
    np.testing.assert_array_equal(
        ops.convert_to_numpy(backbone._encoder_token_ids(ids)[1]), derived["clip_g"]
    )
    first, second = _numpy(backbone.encode_text(ids)), _numpy(backbone.encode_text(derived))
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    # With ViT-L's padding (the end token) bigG's states at the padding
    # differ (the pooled vector, read at the end token before them, does not).
    same = _numpy(backbone.encode_text({"clip_l": ids, "clip_g": ids}))
    assert np.abs(same["context"] - first["context"]).max() > 1e-4


def test_token_lookup_is_one_lookup_per_encoder(backbone):
    ids = backbone.tokenizer(["a red fox"])
    tables = backbone.token_embeddings
    lookup = {
        key: (lambda table: lambda token_ids: ops.take(table.embeddings, token_ids, axis=0))(table)
        for key, table in tables.items()
    }
    view = backbone.with_token_lookup(backbone.tokenizer, lookup)
    plain, looked_up = _numpy(backbone.encode_text(ids)), _numpy(view.encode_text(ids))
    for name in plain:
        np.testing.assert_allclose(looked_up[name], plain[name], atol=1e-6)
    with pytest.raises(ValueError, match="clip_l"):
        backbone.encode_text(ids, token_lookup=lookup["clip_l"])
    np.testing.assert_array_equal(view.time_ids(32, 48), [32, 48, 0, 0, 32, 48])


def test_saved_folder_records_the_family_and_loads_the_same(backbone, tmp_path):
    from studio.interop import load_backbone

    folder = backbone.save_to_preset(str(tmp_path / "saved"))
    config = json.loads((tmp_path / "saved" / "backbone.json").read_text())
    assert config["family"] == "sdxl" and config["tokenizer_2"]["pad_token"] == "!"
    loaded = load_backbone(folder)
    ids = backbone.tokenizer(["a cat"])
    first, second = _numpy(backbone.encode_text(ids)), _numpy(loaded.encode_text(ids))
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def test_sdxl_base_names_where_its_weights_come_from():
    from studio.interop import load_backbone

    with pytest.raises(WeightsNotFoundError, match="sd_xl_base_1.0.safetensors"):
        load_backbone("sdxl-base")


def test_networks_that_do_not_fit_are_named(backbone):
    from studio.models import UNet
    from studio.models.sdxl import SDXLBackbone

    config = dict(backbone.unet.get_config(), pooled_text_dim=16)
    for key in ("name", "trainable", "dtype"):
        config.pop(key)
    with pytest.raises(ValueError, match="pooled_text_dim=16"):
        SDXLBackbone(
            **{name: getattr(backbone, name) for name in backbone.component_names if name != "unet"},
            unet=UNet(**config),
            tokenizer=backbone.tokenizer,
            tokenizer_2=backbone.tokenizer_2,
        )
