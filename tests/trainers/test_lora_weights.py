"""LoRA files in kohya's layout: naming, torch's [out, in] layout, scale (any backend)."""

import json
import os
import struct

import keras
import numpy as np
import pytest

from studio.models import StableDiffusionBackbone
from studio.lora.lora_targets import unet_lora_targets
from studio.lora.lora_weights import LoRAWeights

RANK = 2
ALPHA = 1.0
MODULE = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
TEXT_MODULE = "lora_te_text_model_encoder_layers_1_mlp_fc1"


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


@pytest.fixture
def backbone():
    keras.utils.set_random_seed(0)
    return StableDiffusionBackbone.from_preset("tiny")


def kohya_matrices(layer, seed):
    """Random kohya matrices for `layer`: down (rank, in), up (out, rank)."""
    in_features, out_features = layer.kernel.shape
    rng = np.random.default_rng(seed)
    down = rng.standard_normal((RANK, in_features)).astype("float32")
    up = rng.standard_normal((out_features, RANK)).astype("float32")
    return down, up


def read_header(path):
    data = open(path, "rb").read()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length])


def test_applied_lora_computes_torch_linear_formula(backbone):
    """y = x W_t^T + scale * alpha / rank * x down^T up^T, with W_t = kernel^T (torch layout)."""
    layer = unet_lora_targets(backbone.unet)["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"]
    down, up = kohya_matrices(layer, seed=1)
    weights_torch = numpy(layer.kernel).T  # (out, in), as a torch Linear stores it
    x = np.random.default_rng(2).standard_normal((3, down.shape[1])).astype("float32")
    scale = 0.5
    LoRAWeights({MODULE: (down, up, ALPHA)}).apply(backbone, scale=scale)
    expected = x @ weights_torch.T + scale * (ALPHA / RANK) * (x @ down.T @ up.T)
    np.testing.assert_allclose(numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_file_has_kohya_keys_shapes_and_metadata(backbone, tmp_path):
    targets = unet_lora_targets(backbone.unet)
    layer = targets["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"]
    down, up = kohya_matrices(layer, seed=1)
    LoRAWeights({MODULE: (down, up, ALPHA)}).apply(backbone)
    path = LoRAWeights.from_backbone(backbone, {"note": "test"}).save(tmp_path / "l.safetensors")
    header = read_header(path)
    in_features, out_features = layer.kernel.shape
    assert header[MODULE + ".lora_down.weight"]["shape"] == [RANK, in_features]
    assert header[MODULE + ".lora_up.weight"]["shape"] == [out_features, RANK]
    assert header[MODULE + ".alpha"]["shape"] == []
    assert header[MODULE + ".lora_down.weight"]["dtype"] == "F32"
    assert header["__metadata__"] == {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(RANK),
        "ss_network_alpha": "1",
        "note": "test",
    }
    loaded = LoRAWeights.load(path)
    stored_down, stored_up, stored_alpha = loaded.modules[MODULE]
    np.testing.assert_array_equal(stored_down, down)
    np.testing.assert_array_equal(stored_up, up)
    assert stored_alpha == ALPHA


def test_float16_files_are_half_size_and_close(tmp_path):
    rng = np.random.default_rng(0)
    modules = {MODULE: (rng.standard_normal((RANK, 32)), rng.standard_normal((32, RANK)), 4.0)}
    weights = LoRAWeights(modules)
    full = weights.save(tmp_path / "f32.safetensors")
    half = weights.save(tmp_path / "f16.safetensors", dtype="float16")
    assert read_header(half)[MODULE + ".lora_up.weight"]["dtype"] == "F16"
    assert read_header(half)[MODULE + ".alpha"]["dtype"] == "F32"
    down, up, alpha = LoRAWeights.load(half).modules[MODULE]
    np.testing.assert_allclose(down, modules[MODULE][0], rtol=1e-3, atol=1e-3)
    assert alpha == 4.0
    assert os.path.getsize(half) < os.path.getsize(full)


def test_scale_zero_reproduces_the_base_model_bit_for_bit(backbone):
    inputs = {
        "latents": np.random.default_rng(0).standard_normal((1, 8, 8, 4)).astype("float32"),
        "timesteps": np.array([500], "int32"),
        "context": np.random.default_rng(1).standard_normal((1, 77, 32)).astype("float32"),
    }
    base = numpy(backbone.unet(inputs))
    modules = {}
    for name, layer in unet_lora_targets(backbone.unet, feed_forward=True).items():
        down, up = kohya_matrices(layer, seed=len(modules))
        modules["lora_unet_" + name.replace(".", "_")] = (down, up, ALPHA)
    weights = LoRAWeights(modules)
    weights.apply(backbone, scale=0.0)
    np.testing.assert_array_equal(numpy(backbone.unet(inputs)), base)
    weights.apply(backbone, scale=1.0)
    assert np.abs(numpy(backbone.unet(inputs)) - base).max() > 1e-3


def test_text_encoder_modules_apply_and_alpha_defaults_to_rank(backbone, tmp_path):
    import safetensors.numpy

    layer = backbone.text_encoder.encoder_layers[1].intermediate_dense
    down, up = kohya_matrices(layer, seed=3)
    path = tmp_path / "no-alpha.safetensors"
    safetensors.numpy.save_file(
        {TEXT_MODULE + ".lora_down.weight": down, TEXT_MODULE + ".lora_up.weight": up}, path
    )
    weights = LoRAWeights.load(path)
    assert weights.modules[TEXT_MODULE][2] == RANK
    assert weights.apply(backbone) == [TEXT_MODULE]
    assert layer.lora_enabled and layer.lora_rank == RANK
    np.testing.assert_array_equal(numpy(layer.lora_kernel_a), down.T)
    np.testing.assert_array_equal(numpy(layer.lora_kernel_b), up.T)


def test_unknown_modules_are_refused_unless_not_strict(backbone):
    layer = unet_lora_targets(backbone.unet)["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"]
    down, up = kohya_matrices(layer, seed=1)
    conv_module = "lora_unet_down_blocks_0_attentions_0_proj_in"
    weights = LoRAWeights({MODULE: (down, up, ALPHA), conv_module: (down, up, ALPHA)})
    with pytest.raises(ValueError, match="no matching layer.*proj_in"):
        weights.apply(backbone)
    assert weights.apply(backbone, strict=False) == [MODULE]


def test_shape_and_rank_mismatches_are_refused(backbone):
    layer = unet_lora_targets(backbone.unet)["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"]
    down, up = kohya_matrices(layer, seed=1)
    with pytest.raises(ValueError, match="does not fit its layer"):
        LoRAWeights({MODULE: (down[:, 1:], up, ALPHA)}).apply(backbone)
    LoRAWeights({MODULE: (down, up, ALPHA)}).apply(backbone)
    with pytest.raises(ValueError, match="already has LoRA of rank 2"):
        LoRAWeights({MODULE: (np.ones((3, down.shape[1])), np.ones((up.shape[0], 3)), 1.0)}).apply(
            backbone
        )
    with pytest.raises(ValueError, match="one rank"):
        LoRAWeights({MODULE: (down, up[:, :1], ALPHA)})


def test_files_with_other_tensors_are_not_kohya_lora(tmp_path):
    import safetensors.numpy

    path = tmp_path / "lycoris.safetensors"
    safetensors.numpy.save_file({MODULE + ".hada_w1_a": np.ones((2, 2), "float32")}, path)
    with pytest.raises(ValueError, match="not a kohya LoRA file"):
        LoRAWeights.load(path)
    path = tmp_path / "half.safetensors"
    safetensors.numpy.save_file({MODULE + ".lora_down.weight": np.ones((2, 2), "float32")}, path)
    with pytest.raises(ValueError, match="needs both"):
        LoRAWeights.load(path)


def test_a_backbone_without_lora_has_nothing_to_save(backbone):
    with pytest.raises(ValueError, match="no LoRA-enabled layer"):
        LoRAWeights.from_backbone(backbone)
