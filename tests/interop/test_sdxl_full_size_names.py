"""SDXL base's full-size weight names, key by key and shape by shape, without memory.

PyTorch's side: diffusers' `UNet2DConditionModel` and `AutoencoderKL` and
transformers' `CLIPTextModel` / `CLIPTextModelWithProjection` built from
SDXL base 1.0's configs on the meta device. Ours: the `sdxl-base`
preset's networks built with uninitialised variables (a
`keras.StatelessScope` that initialises nothing), so only shapes exist.

The diffusers layout is compared with the meta state dicts directly. The
single-file (SGM) layout is checked through diffusers' own converters of
original checkpoints (`convert_ldm_unet_checkpoint`, ...): the names our
tables give a single file must convert to exactly the meta state dicts.
"""

import contextlib

import pytest

SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "transformer_layers_per_block": (1, 2, 10),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
}
SDXL_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
}
CLIP_L = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}
CLIP_G = {
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
# Released SDXL base 1.0 tensor counts (diffusers' unet/, vae/,
# text_encoder/, text_encoder_2/ of stabilityai/stable-diffusion-xl-base-1.0).
RELEASED_COUNTS = {"unet": 1680, "vae": 248, "text_encoder": 196, "text_encoder_2": 517}


@contextlib.contextmanager
def _shapes_only():
    """Builds Keras networks whose variables have shapes but no values (no memory)."""
    import keras
    from keras.src.backend.common import global_state

    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        # Keras keeps uninitialised variables to initialise at the next
        # scope's exit; these must never be (gigabytes), so forget them.
        global_state.set_global_attribute("uninitialized_variables", [])


@pytest.fixture(scope="module")
def meta():
    """PyTorch's full-size SDXL modules on the meta device: name -> {key: shape}."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        modules = {
            "unet": diffusers.UNet2DConditionModel(**SDXL_UNET),
            "vae": diffusers.AutoencoderKL(**SDXL_VAE),
            "text_encoder": transformers.CLIPTextModel(transformers.CLIPTextConfig(**CLIP_L)),
            "text_encoder_2": transformers.CLIPTextModelWithProjection(
                transformers.CLIPTextConfig(**CLIP_G)
            ),
        }
    shapes = {
        name: {key: tuple(tensor.shape) for key, tensor in module.state_dict().items()}
        for name, module in modules.items()
    }
    return {"modules": modules, "shapes": shapes}


@pytest.fixture(scope="module")
def ours():
    """The `sdxl-base` preset's networks, shapes only."""
    from studio.models import BACKBONE_PRESETS, network_classes

    spec = BACKBONE_PRESETS["sdxl-base"]
    classes = network_classes()
    with _shapes_only():
        return {
            name: classes[spec[name]["class_name"]](name=name, **spec[name]["config"])
            for name in ("text_encoder", "text_encoder_2", "unet", "vae_encoder", "vae_decoder")
        }


def _table_shapes(network, names):
    from studio.interop.weight_transfer import torch_weights

    table = torch_weights(network, names)
    keys = [key for key, _, _ in table]
    assert len(keys) == len(set(keys)), "a name appears twice"
    return {key: shape for key, shape, _ in table}


def _diffusers_tables(ours):
    from studio.interop.text_encoder_names import (
        DIFFUSERS_PREFIX,
        HUGGING_FACE,
        text_encoder_weight_names,
    )
    from studio.interop.unet_names import DIFFUSERS, unet_weight_names
    from studio.interop.vae_names import vae_decoder_weight_names, vae_encoder_weight_names

    vae = _table_shapes(
        ours["vae_encoder"], vae_encoder_weight_names(ours["vae_encoder"], DIFFUSERS)
    )
    vae.update(
        _table_shapes(ours["vae_decoder"], vae_decoder_weight_names(ours["vae_decoder"], DIFFUSERS))
    )
    encoder, encoder_2 = ours["text_encoder"], ours["text_encoder_2"]
    return {
        "unet": _table_shapes(ours["unet"], unet_weight_names(ours["unet"], DIFFUSERS)),
        "vae": vae,
        # transformers 5 saves CLIPTextModel without `text_model.`; both load.
        "text_encoder": _table_shapes(encoder, text_encoder_weight_names(encoder, HUGGING_FACE, "")),
        "text_encoder_2": _table_shapes(
            encoder_2, text_encoder_weight_names(encoder_2, HUGGING_FACE, DIFFUSERS_PREFIX)
        ),
    }


def _single_file_table(ours):
    from studio.interop.sdxl_single_file_names import sdxl_single_file_weight_names

    shapes = {}
    for name, network in ours.items():
        table = _table_shapes(network, sdxl_single_file_weight_names(network, name))
        assert not set(table) & set(shapes), f"{name} reuses names of another network"
        shapes.update(table)
    return shapes


def _diff(actual, expected):
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    shapes = sorted(
        (key, actual[key], expected[key])
        for key in set(actual) & set(expected)
        if tuple(actual[key]) != tuple(expected[key])
    )
    return missing[:5], extra[:5], shapes[:5]


def test_preset_is_what_the_diffusers_configs_translate_to():
    from studio.interop.diffusers_configs import (
        text_encoder_arguments_from_transformers,
        unet_arguments_from_diffusers,
    )
    from studio.models import BACKBONE_PRESETS

    spec = BACKBONE_PRESETS["sdxl-base"]
    arguments, sample_size = unet_arguments_from_diffusers(dict(SDXL_UNET), "sdxl unet")
    assert arguments == spec["unet"]["config"]
    assert sample_size * 8 == spec["image_size"]
    for name, config in (("text_encoder", CLIP_L), ("text_encoder_2", CLIP_G)):
        translated = text_encoder_arguments_from_transformers(dict(config), name)
        preset = spec[name]["config"]
        assert {key: preset[key] for key in translated} == translated


# About 30 s to build the full-size graphs (no memory): CI's large step.
@pytest.mark.large
def test_diffusers_layout_matches_key_by_key_and_shape_by_shape(ours, meta):
    tables = _diffusers_tables(ours)
    for name, expected in meta["shapes"].items():
        expected = {k: v for k, v in expected.items() if not k.endswith("position_ids")}
        assert _diff(tables[name], expected) == ([], [], []), name
        assert len(tables[name]) == RELEASED_COUNTS[name], name


@pytest.mark.large
def test_single_file_layout_converts_to_diffusers_key_by_key(ours, meta):
    """Our SGM names, converted by diffusers' single-file code, give the full models."""
    import torch
    from diffusers.loaders import single_file_utils as single_file

    shapes = _single_file_table(ours)
    with torch.device("meta"):
        checkpoint = {key: torch.empty(shape) for key, shape in shapes.items()}
    unet_config = {**SDXL_UNET, "upcast_attention": False}
    converted = {
        "unet": single_file.convert_ldm_unet_checkpoint(checkpoint, unet_config),
        "vae": single_file.convert_ldm_vae_checkpoint(checkpoint, SDXL_VAE),
        "text_encoder": single_file.convert_ldm_clip_checkpoint(
            checkpoint, remove_prefix="conditioner.embedders.0.transformer."
        ),
        "text_encoder_2": single_file.convert_open_clip_checkpoint(
            meta["modules"]["text_encoder_2"], checkpoint, prefix="conditioner.embedders.1.model."
        ),
    }
    for name, tensors in converted.items():
        actual = {key: tuple(tensor.shape) for key, tensor in tensors.items()}
        expected = {
            k: v for k, v in meta["shapes"][name].items() if not k.endswith("position_ids")
        }
        if name == "text_encoder":
            # The single file nests CLIP-L under `text_model.`, as transformers 4 saved it.
            expected = {f"text_model.{k}": v for k, v in expected.items()}
        assert _diff(actual, expected) == ([], [], []), name
    # Every tensor of the file is one of the four networks' (each fused
    # query-key-value weight and bias of bigG's blocks becomes three).
    total = sum(len(tensors) for tensors in converted.values())
    assert total == len(shapes) + 4 * CLIP_G["num_hidden_layers"]
