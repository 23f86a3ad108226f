"""LoRA target layers and their diffusers / kohya names (any backend)."""

import collections

import keras
import pytest

from studio.models import BACKBONE_PRESETS, StableDiffusionBackbone
from studio.lora.lora_targets import (
    TEXT_ENCODER_PREFIX,
    UNET_PREFIX,
    diffusers_block_name,
    kohya_name,
    text_encoder_lora_targets,
    unet_lora_module_names,
    unet_lora_targets,
)

SD_V1_UNET = BACKBONE_PRESETS["sd-v1"]["unet"]["config"]
TINY_UNET = BACKBONE_PRESETS["tiny"]["unet"]["config"]


def diffusers_sd15_attention_modules(feed_forward=False):
    """Every attention projection of diffusers' UNet2DConditionModel for SD 1.5.

    Written from diffusers' architecture, independently of the code under
    test: CrossAttnDownBlock2D at down_blocks 0-2 (2 transformers each),
    DownBlock2D at 3; UNetMidBlock2DCrossAttn (1); UpBlock2D at up_blocks 0,
    CrossAttnUpBlock2D at 1-3 (3 transformers each); each Transformer2DModel
    has one BasicTransformerBlock with attn1 (self) and attn2 (cross), each
    with to_q, to_k, to_v and to_out.0, and a GEGLU feed-forward
    (ff.net.0.proj, ff.net.2).
    """
    transformers = [f"down_blocks.{b}.attentions.{a}" for b in range(3) for a in range(2)]
    transformers.append("mid_block.attentions.0")
    transformers += [f"up_blocks.{b}.attentions.{a}" for b in range(1, 4) for a in range(3)]
    leaves = [f"{attn}.{proj}" for attn in ("attn1", "attn2")
              for proj in ("to_q", "to_k", "to_v", "to_out.0")]
    if feed_forward:
        leaves += ["ff.net.0.proj", "ff.net.2"]
    return [f"{t}.transformer_blocks.0.{leaf}" for t in transformers for leaf in leaves]


def unet_config_names(config, feed_forward=False):
    return unet_lora_module_names(
        config["block_channels"],
        config["layers_per_block"],
        config["attention_levels"],
        config.get("transformer_depth", 1),
        feed_forward=feed_forward,
    )


@pytest.mark.parametrize("feed_forward", [False, True], ids=["attention", "feed_forward"])
def test_sd_v1_names_are_diffusers_sd15_modules_each_once(feed_forward):
    names = unet_config_names(SD_V1_UNET, feed_forward)
    expected = diffusers_sd15_attention_modules(feed_forward)
    assert len(expected) == (160 if feed_forward else 128)
    duplicates = [name for name, count in collections.Counter(names).items() if count > 1]
    assert duplicates == []
    assert sorted(names) == sorted(expected)


def test_kohya_names_of_sd_v1_modules():
    names = {kohya_name(UNET_PREFIX, n) for n in unet_config_names(SD_V1_UNET, True)}
    # Keys seen in kohya SD 1.x LoRA files (and which tools such as
    # SwarmUI use to recognise one).
    for key in (
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
        "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k",
        "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_out_0",
        "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_2",
        "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_ff_net_0_proj",
    ):
        assert key in names
    assert kohya_name(TEXT_ENCODER_PREFIX, "text_model.encoder.layers.11.self_attn.q_proj") == (
        "lora_te_text_model_encoder_layers_11_self_attn_q_proj"
    )


def test_block_names_count_up_levels_from_the_bottom():
    assert diffusers_block_name("down2_attention1", 4) == "down_blocks.2.attentions.1"
    assert diffusers_block_name("mid_attention", 4) == "mid_block.attentions.0"
    assert diffusers_block_name("up2_attention0", 4) == "up_blocks.1.attentions.0"
    assert diffusers_block_name("up0_attention2", 4) == "up_blocks.3.attentions.2"
    with pytest.raises(ValueError, match="Received: 'down0_resnet0'"):
        diffusers_block_name("down0_resnet0", 4)


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    return StableDiffusionBackbone.from_preset("tiny")


@pytest.mark.parametrize("feed_forward", [False, True], ids=["attention", "feed_forward"])
def test_built_unet_targets_match_the_config_names(tiny, feed_forward):
    targets = unet_lora_targets(tiny.unet, feed_forward=feed_forward)
    assert list(targets) == unet_config_names(TINY_UNET, feed_forward)
    assert len({id(layer) for layer in targets.values()}) == len(targets)
    for name, layer in targets.items():
        assert isinstance(layer, keras.layers.Dense), name
        in_features, out_features = layer.kernel.shape
        # Cross-attention keys and values read the text context.
        if ".attn2.to_k" in name or ".attn2.to_v" in name:
            assert in_features == TINY_UNET["context_dim"]
        if name.endswith("ff.net.0.proj"):
            assert out_features == 2 * 4 * in_features  # GEGLU: two halves of 4x width


def test_text_encoder_targets(tiny):
    layers = tiny.text_encoder.encoder_layers
    attention = text_encoder_lora_targets(tiny.text_encoder)
    assert len(attention) == 4 * len(layers)
    assert attention["text_model.encoder.layers.1.self_attn.out_proj"] is layers[1].output_dense
    with_mlp = text_encoder_lora_targets(tiny.text_encoder, mlp=True)
    assert len(with_mlp) == 6 * len(layers)
    assert with_mlp["text_model.encoder.layers.0.mlp.fc2"] is layers[0].mlp_output_dense


@pytest.mark.large
def test_full_size_sd_v1_unet_targets_are_the_diffusers_modules():
    """Built at full size (bfloat16 weights: about 1.7 GB), not from the config alone."""
    from studio.models import UNet

    unet = UNet(**SD_V1_UNET, dtype="bfloat16")
    targets = unet_lora_targets(unet, feed_forward=True)
    assert sorted(targets) == sorted(diffusers_sd15_attention_modules(feed_forward=True))
    to_k = targets["mid_block.attentions.0.transformer_blocks.0.attn2.to_k"]
    assert tuple(to_k.kernel.shape) == (768, 1280)  # [in, out]; torch's Linear is [1280, 768]
