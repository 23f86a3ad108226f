"""Export then import gives back the same model, without PyTorch."""

import json
import os

import numpy as np
import pytest

from studio.interop import (
    export_diffusers_folder,
    export_single_file,
    import_diffusers_folder,
    import_single_file,
)
from studio.interop.checkpoint_reader import read_checkpoint


@pytest.fixture(scope="module", params=["sd1", "sd2"])
def backbone(request, build_studio_backbone):
    return build_studio_backbone(request.param)


# Imported networks compute with what diffusers and single-file readers
# compute, whatever the exported networks used (KerasCV's numerics, here).
READERS_NUMERICS = {
    "unet": {
        "resnet_norm_epsilon": 1e-5,
        "transformer_norm_epsilon": 1e-6,
        "gelu_approximate": False,
    },
    "vae_encoder": {"norm_epsilon": 1e-6},
    "vae_decoder": {"norm_epsilon": 1e-6},
    "text_encoder": {},
}


def _assert_same_weights(imported, original):
    for name, network in original.components.items():
        numerics = READERS_NUMERICS[name]
        config = imported.components[name].get_config()
        assert {key: config[key] for key in numerics} == numerics, name
        assert network.get_config() | numerics | {"name": None} == config | {"name": None}, name
        for ours, theirs in zip(imported.components[name].get_weights(), network.get_weights()):
            np.testing.assert_array_equal(ours, theirs)


def test_diffusers_folder_round_trip(backbone, tmp_path):
    folder = export_diffusers_folder(backbone, tmp_path / "model")
    assert sorted(os.listdir(folder)) == [
        "model_index.json",
        "scheduler",
        "text_encoder",
        "tokenizer",
        "unet",
        "vae",
    ]
    imported = import_diffusers_folder(folder)
    _assert_same_weights(imported, backbone)
    for attribute in ("prediction_type", "latent_scale", "image_size", "noise_schedule"):
        assert getattr(imported, attribute) == getattr(backbone, attribute), attribute
    prompt = ["a photo of a cat, 4k"]
    assert imported.tokenizer(prompt).tolist() == backbone.tokenizer(prompt).tolist()
    assert imported.tokenizer.pad_token == backbone.tokenizer.pad_token


def test_single_file_round_trip(backbone, tmp_path):
    folder = export_diffusers_folder(backbone, tmp_path / "model")
    path = export_single_file(backbone, tmp_path / "model.safetensors")
    imported = import_single_file(path, vocabulary=os.path.join(folder, "tokenizer"))
    _assert_same_weights(imported, backbone)
    assert (imported.prediction_type, imported.image_size) == (
        backbone.prediction_type,
        backbone.image_size,
    )
    tensors, metadata = read_checkpoint(path)
    assert metadata["modelspec.resolution"] == "16x16"
    if backbone.text_encoder.intermediate_activation == "quick_gelu":
        assert "cond_stage_model.transformer.text_model.final_layer_norm.weight" in tensors
    else:
        # OpenCLIP layout, one identity block more than the encoder runs.
        last = "cond_stage_model.model.transformer.resblocks.2."
        assert not np.any(tensors[last + "attn.out_proj.weight"].numpy())
        assert not np.any(tensors[last + "mlp.c_proj.weight"].numpy())
        assert "cond_stage_model.model.transformer.resblocks.3.ln_1.weight" not in tensors


def test_exports_refuse_to_replace_without_overwrite(backbone, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="overwrit"):
        export_single_file(backbone, path)
    assert path.read_bytes() == b"old"
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrit"):
        export_diffusers_folder(backbone, folder)
    assert os.listdir(folder) == ["keep.txt"]
    export_diffusers_folder(backbone, folder, overwrite=True)
    assert "keep.txt" not in os.listdir(folder)
    assert sorted(os.listdir(tmp_path)) == ["folder", "model.safetensors"]  # Nothing left over.


def test_single_file_refuses_what_it_cannot_record(tmp_path):
    from studio.models import StableDiffusionBackbone

    tiny = StableDiffusionBackbone.from_preset("tiny")  # 8 GroupNorm groups, 2 UNet heads.
    with pytest.raises(ValueError, match="diffusers folder") as error:
        export_single_file(tiny, tmp_path / "tiny.safetensors")
    assert "norm_groups=8" in str(error.value)
    assert not os.listdir(tmp_path)
    # The diffusers folder records everything.
    imported = import_diffusers_folder(export_diffusers_folder(tiny, tmp_path / "tiny"))
    _assert_same_weights(imported, tiny)
    with open(tmp_path / "tiny" / "unet" / "config.json") as file:
        assert json.load(file)["norm_num_groups"] == 8


def test_single_file_refuses_a_resnet_epsilon_readers_would_not_assume(
    build_studio_backbone, tmp_path
):
    from studio.models import StableDiffusionBackbone, UNet

    original = build_studio_backbone("sd1")

    def with_unet_options(**options):
        unet = UNet.from_config({**original.unet.get_config(), **options})
        components = {**original.components, "unet": unet}
        return StableDiffusionBackbone(
            **components,
            tokenizer=original.tokenizer,
            prediction_type=original.prediction_type,
            image_size=original.image_size,
        )

    with pytest.raises(ValueError, match="resnet_norm_epsilon=1e-06"):
        export_single_file(with_unet_options(resnet_norm_epsilon=1e-6), tmp_path / "a.safetensors")
    assert not os.listdir(tmp_path)
    # The transformers' epsilon and GELU form have no place in any file;
    # readers compute theirs, so they do not stop an export.
    export_single_file(
        with_unet_options(transformer_norm_epsilon=1e-6, gelu_approximate=False),
        tmp_path / "b.safetensors",
    )


def test_lora_layers_are_exported_merged(build_studio_backbone, tmp_path):
    """A LoRA fine-tune exports as a plain model holding W + (alpha / rank) A B."""
    backbone = build_studio_backbone("sd1", seed=3)
    block = backbone.unet.get_layer("down0_attention0").transformer_blocks[0]
    layer = block.cross_attention.query_projection
    layer.enable_lora(2)
    layer.lora_kernel_b.assign(np.full(layer.lora_kernel_b.shape, 0.5, "float32"))
    merged = np.asarray(layer.kernel)
    assert not np.allclose(merged, np.asarray(layer._kernel))
    path = export_single_file(backbone, tmp_path / "merged.safetensors")
    tensors, _ = read_checkpoint(path)
    name = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_q.weight"
    np.testing.assert_allclose(tensors[name].numpy(), merged.T, rtol=1e-6)


@pytest.mark.parametrize(
    "family, name, metadata, given, expected",
    [
        ("SD 1.x", "model.safetensors", {}, (None, None), ("epsilon", 512)),
        ("SD 2.x", "v2-1_768-ema-pruned.ckpt", {}, (None, None), ("v_prediction", 768)),
        ("SD 2.x", "v2-1_512-ema-pruned.ckpt", {}, (None, None), ("epsilon", 512)),
        ("SD 2.x", "512-base-ema.ckpt", {}, (None, None), ("epsilon", 512)),
        ("SD 2.x", "model.safetensors", {}, (None, 512), ("epsilon", 512)),
        ("SD 2.x", "model.safetensors", {}, ("epsilon", None), ("epsilon", 512)),
        ("SD 2.x", "base.safetensors", {}, ("v_prediction", None), ("v_prediction", 768)),
        (
            "SD 2.x",
            "model.safetensors",
            {"modelspec.prediction_type": "epsilon", "modelspec.resolution": "768x768"},
            (None, None),
            ("epsilon", 768),
        ),
        (
            "SD 1.x",
            "m.safetensors",
            {"modelspec.prediction_type": "v"},
            (None, None),
            ("v_prediction", 512),
        ),
    ],
)
def test_prediction_type_and_size_rule(family, name, metadata, given, expected):
    """The documented rule (single_file_checkpoint's docstring)."""
    from studio.interop.single_file_checkpoint import _prediction_and_size

    assert _prediction_and_size(family, metadata, f"/models/{name}", *given) == expected


def test_sd2_single_file_without_metadata_defaults_to_v_prediction(build_studio_backbone, tmp_path):
    from safetensors.numpy import save_file

    backbone = build_studio_backbone("sd2")
    folder = export_diffusers_folder(backbone, tmp_path / "model")
    exported = export_single_file(backbone, tmp_path / "with-metadata.safetensors")
    tensors = {name: tensor.numpy() for name, tensor in read_checkpoint(exported)[0].items()}
    path = tmp_path / "sd2-finetune.safetensors"
    save_file(tensors, str(path))  # As other tools write them: no ModelSpec.
    imported = import_single_file(path, vocabulary=os.path.join(folder, "tokenizer"))
    assert (imported.prediction_type, imported.image_size) == ("v_prediction", 768)
    assert imported.tokenizer.pad_token == "!"
