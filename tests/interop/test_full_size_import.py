"""A diffusers folder of SD 1.5's size converts to the `sd-v1` preset's networks.

Random weights (nothing is downloaded); about 1.07 billion parameters, so
the PyTorch modules are saved in float16 and freed before the import, and
the preset's networks are built one at a time afterwards.
"""

import gc
import json
import os

import pytest

SD15_UNET = {
    "sample_size": 64,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SD15_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
}
CLIP_VIT_L = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}


def _write_tokenizer(folder):
    """A CLIP-sized byte-pair vocabulary (49408 tokens), made up offline."""
    from studio.interop.hf_tokenizer_files import write_hf_tokenizer
    from studio.tokenizers import CLIPTokenizer
    from studio.tokenizers.clip_vocabulary import base_symbols

    symbols = base_symbols()
    byte_symbols = symbols[: len(symbols) // 2]
    vocabulary = {token: index for index, token in enumerate(symbols)}
    merges = []
    for first in byte_symbols:
        for second in symbols:
            if len(vocabulary) == CLIP_VIT_L["vocab_size"] - 2:
                break
            if first + second not in vocabulary:
                vocabulary[first + second] = len(vocabulary)
                merges.append(f"{first} {second}")
    for token in ("<|startoftext|>", "<|endoftext|>"):
        vocabulary[token] = len(vocabulary)
    os.makedirs(folder)
    write_hf_tokenizer(CLIPTokenizer(vocabulary, merges), folder)


@pytest.mark.large
def test_sd15_sized_folder_converts_to_the_sd_v1_networks(tmp_path):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    from studio.interop import import_diffusers_folder
    from studio.models import BACKBONE_PRESETS, COMPONENTS, network_classes

    folder = tmp_path / "sd15"
    torch.manual_seed(0)
    parameters = {}
    for name, module in (
        ("unet", lambda: diffusers.UNet2DConditionModel(**SD15_UNET)),
        ("vae", lambda: diffusers.AutoencoderKL(**SD15_VAE)),
        (
            "text_encoder",
            lambda: transformers.CLIPTextModel(transformers.CLIPTextConfig(**CLIP_VIT_L)),
        ),
    ):
        built = module().half()
        parameters[name] = sum(parameter.numel() for parameter in built.parameters())
        built.save_pretrained(folder / name)
        del built
        gc.collect()
    _write_tokenizer(str(folder / "tokenizer"))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))

    backbone = import_diffusers_folder(folder)
    preset = BACKBONE_PRESETS["sd-v1"]
    shapes = {}
    for name in COMPONENTS:
        network = backbone.components[name]
        config = {
            k: v for k, v in network.get_config().items() if k not in ("name", "trainable", "dtype")
        }
        expected = preset[name]["config"]
        assert {key: config[key] for key in expected} == expected, name
        shapes[name] = [tuple(weight.shape) for weight in network.weights]
    assert backbone.unet.count_params() == parameters["unet"]
    assert backbone.text_encoder.count_params() == parameters["text_encoder"]
    vae = backbone.vae_encoder.count_params() + backbone.vae_decoder.count_params()
    assert vae == parameters["vae"]
    assert backbone.image_size == preset["image_size"]
    assert backbone.latent_scale == pytest.approx(preset["latent_scale"])
    del backbone, network
    gc.collect()

    classes = network_classes()
    for name in COMPONENTS:
        entry = preset[name]
        network = classes[entry["class_name"]](**entry["config"])
        assert [tuple(weight.shape) for weight in network.weights] == shapes[name], name
        del network
        gc.collect()
