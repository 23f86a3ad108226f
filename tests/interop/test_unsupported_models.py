"""Files the studio cannot import give errors that say what they are."""

import io
import json
import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest
from safetensors.numpy import save_file

from studio.embeddings import EmbeddingFormatError, UnsafePickleError
from studio.tensor_files.torch_pickle_writer import encode_torch_file
from studio.interop import (
    CheckpointFormatError,
    UnsupportedModelError,
    export_diffusers_folder,
    export_single_file,
    import_model,
    import_single_file,
)
from studio.interop.checkpoint_reader import read_checkpoint

CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"


@pytest.fixture(scope="module")
def exported(build_studio_backbone, tmp_path_factory):
    """A tiny SD 1.x model as a single file and a diffusers folder."""
    backbone = build_studio_backbone("sd1")
    folder = tmp_path_factory.mktemp("exported")
    return {
        "single_file": str(export_single_file(backbone, folder / "model.safetensors")),
        "diffusers": export_diffusers_folder(backbone, folder / "diffusers"),
    }


@pytest.fixture(scope="module")
def state_dict(exported):
    tensors, _ = read_checkpoint(exported["single_file"])
    return {name: tensor.numpy() for name, tensor in tensors.items()}


def _write(path, tensors):
    save_file({name: np.ascontiguousarray(value) for name, value in tensors.items()}, str(path))
    return path


def _small(shape=(2, 2)):
    return np.zeros(shape, "float32")


def test_sd_xl_single_file(tmp_path):
    path = _write(
        tmp_path / "sdxl.safetensors",
        {
            "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": _small(),
            "conditioner.embedders.1.model.transformer.resblocks.0.ln_1.weight": _small((2,)),
            CONV_IN: _small((8, 4, 3, 3)),
            "model.diffusion_model.label_emb.0.0.weight": _small(),
        },
    )
    with pytest.raises(UnsupportedModelError, match="SD-XL") as error:
        import_single_file(path)
    assert "conditioner.embedders" in str(error.value)


def test_sd3_single_file(tmp_path):
    path = _write(
        tmp_path / "sd3.safetensors",
        {"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": _small()},
    )
    with pytest.raises(UnsupportedModelError, match="SD 3"):
        import_single_file(path)


@pytest.mark.parametrize(
    "tensors, what",
    [
        (
            {"conv_in.weight": _small(), "down_blocks.0.resnets.0.conv1.weight": _small()},
            "diffusers",
        ),
        ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": _small()}, "LoRA"),
        ({"encoder.conv_in.weight": _small(), "decoder.conv_in.weight": _small()}, "VAE"),
        ({"some.other.model.weight": _small()}, "not a Stable Diffusion checkpoint"),
    ],
)
def test_other_files_are_named(tensors, what, tmp_path):
    with pytest.raises(UnsupportedModelError, match=what):
        import_single_file(_write(tmp_path / "other.safetensors", tensors))


def test_unexpected_and_mismatched_tensors(state_dict, exported, tmp_path):
    tokenizer = os.path.join(exported["diffusers"], "tokenizer")
    extra = dict(state_dict, **{"model.diffusion_model.input_blocks.1.2.conv.weight": _small()})
    with pytest.raises(CheckpointFormatError, match="no place") as error:
        import_single_file(_write(tmp_path / "extra.safetensors", extra), vocabulary=tokenizer)
    assert "input_blocks.1.2.conv.weight" in str(error.value)

    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_v.weight"
    mismatched = dict(state_dict, **{key: _small((4, 4))})
    with pytest.raises(CheckpointFormatError, match="does not fit") as error:
        import_single_file(
            _write(tmp_path / "mismatch.safetensors", mismatched), vocabulary=tokenizer
        )
    assert key in str(error.value)

    no_vae = {k: v for k, v in state_dict.items() if not k.startswith("first_stage_model.")}
    with pytest.raises(CheckpointFormatError, match="no VAE"):
        import_single_file(_write(tmp_path / "no-vae.safetensors", no_vae), vocabulary=tokenizer)


def test_tokenizer_needed_for_a_small_vocabulary(exported):
    with pytest.raises(CheckpointFormatError, match="tokenizer folder"):
        import_single_file(exported["single_file"])


def test_truncated_files(exported, tmp_path):
    data = open(exported["single_file"], "rb").read()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(EmbeddingFormatError, match="truncated"):
        import_single_file(truncated)

    ckpt = encode_torch_file(
        {"state_dict": {"model.diffusion_model.out.2.bias": np.zeros(4, "float32")}}
    )
    cut = tmp_path / "truncated.ckpt"
    cut.write_bytes(ckpt[: len(ckpt) - 40])
    with pytest.raises(EmbeddingFormatError, match="truncated|damaged"):
        import_single_file(cut)

    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises((EmbeddingFormatError, CheckpointFormatError)):
        import_single_file(empty)


class _RunsCode:
    """Pickles as a call of `os.system`, as a malicious checkpoint would."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_pickle_with_a_foreign_global_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    payload = {"state_dict": {}, "callback": _RunsCode(f"touch {marker}")}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(payload, protocol=2))
        archive.writestr("archive/version", "3\n")
    path = tmp_path / "model.ckpt"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UnsafePickleError, match="system"):
        import_single_file(path)
    assert not marker.exists()


def test_lightning_training_objects_are_refused_with_advice(tmp_path):
    """Lightning .ckpt files pickle a ModelCheckpoint callback beside the weights."""
    data = (
        b"\x80\x02}q\x00(X\x0b\x00\x00\x00global_stepq\x01K\x01X\t\x00\x00\x00callbacksq\x02"
        b"cpytorch_lightning.callbacks.model_checkpoint\nModelCheckpoint\nq\x03)\x81q\x04u."
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", data)
    path = tmp_path / "sd-v1-4.ckpt"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UnsafePickleError, match="ModelCheckpoint") as error:
        import_single_file(path)
    assert ".safetensors" in str(error.value)


def _copy_folder(exported, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(exported["diffusers"], folder)
    return folder


def _edit_json(path, **changes):
    with open(path) as file:
        config = json.load(file)
    config.update(changes)
    with open(path, "w") as file:
        json.dump(config, file)


def test_sd_xl_unet_without_sd_xl_text_encoders(exported, tmp_path):
    """An SD folder with an SD-XL UNet is refused; a whole SD-XL folder goes to the SDXL importer."""
    from studio.interop import CheckpointFormatError

    folder = _copy_folder(exported, tmp_path)
    _edit_json(
        folder / "unet" / "config.json", addition_embed_type="text_time", cross_attention_dim=2048
    )
    with pytest.raises(UnsupportedModelError, match="SD-XL") as error:
        import_model(folder)
    assert "text_time" in str(error.value)
    shutil.copytree(folder / "text_encoder", folder / "text_encoder_2")
    _edit_json(folder / "model_index.json", _class_name="StableDiffusionXLPipeline")
    with pytest.raises(CheckpointFormatError, match="SD-XL") as error:
        import_model(folder)
    assert "tokenizer_2" in str(error.value)


def test_sd3_diffusers_folder(exported, tmp_path):
    folder = _copy_folder(exported, tmp_path)
    shutil.move(folder / "unet", folder / "transformer")
    _edit_json(folder / "model_index.json", _class_name="StableDiffusion3Pipeline")
    with pytest.raises(UnsupportedModelError, match="transformer"):
        import_model(folder)


def test_unknown_unet_setting_is_named(exported, tmp_path):
    folder = _copy_folder(exported, tmp_path)
    _edit_json(folder / "unet" / "config.json", resnet_time_scale_shift="scale_shift")
    with pytest.raises(UnsupportedModelError, match="resnet_time_scale_shift='scale_shift'"):
        import_model(folder)


@pytest.mark.parametrize("value", [0, -1e-5, "1e-5", None])
def test_unet_norm_eps_must_be_a_positive_number(exported, tmp_path, value):
    folder = _copy_folder(exported, tmp_path)
    _edit_json(folder / "unet" / "config.json", norm_eps=value)
    with pytest.raises(UnsupportedModelError, match="`norm_eps` must be a positive") as error:
        import_model(folder)
    assert f"Received: norm_eps={value!r}" in str(error.value)


def test_folders_and_paths_that_are_no_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_model(tmp_path / "missing.safetensors")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FileNotFoundError, match="not a diffusers model"):
        import_model(tmp_path)
    with pytest.raises(CheckpointFormatError, match="neither"):
        import_model(tmp_path / "notes.txt")
