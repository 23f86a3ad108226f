"""`studio models import` and `studio models export`."""

import argparse
import json
import os

import numpy as np
import pytest

from studio.cli import models_command
from studio.interop.checkpoint_reader import read_checkpoint

# Commands and pages generate here; their compiled loop is tested elsewhere.
pytestmark = pytest.mark.usefixtures("eager_tensorflow")


def _run(*argv):
    parser = argparse.ArgumentParser(prog="studio")
    models_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.run(args)


@pytest.fixture(scope="module")
def diffusers_folder(build_studio_backbone, tmp_path_factory):
    from studio.interop import export_diffusers_folder

    backbone = build_studio_backbone("sd2")
    return export_diffusers_folder(backbone, tmp_path_factory.mktemp("cli") / "sd2-diffusers")


@pytest.fixture(scope="module")
def model_folder(diffusers_folder, tmp_path_factory):
    """The diffusers folder, imported with the command."""
    out = tmp_path_factory.mktemp("cli") / "imported"
    assert _run("models", "import", diffusers_folder, "--out", str(out)) == 0
    return out


def test_import_writes_a_model_folder_that_from_preset_loads(
    diffusers_folder, model_folder, capsys
):
    from studio.models import StableDiffusionBackbone
    from studio.tokenizers import CLIPTokenizer

    loaded = StableDiffusionBackbone.from_preset(str(model_folder))
    assert loaded.prediction_type == "v_prediction"
    assert loaded.tokenizer.pad_token == "!"  # Read from the folder's tokenizer/.
    original = CLIPTokenizer.byte_level(pad_token="!")  # The exported model's.
    assert loaded.tokenizer(["a cat"]).tolist() == original(["a cat"]).tolist()
    tensors, _ = read_checkpoint(
        os.path.join(diffusers_folder, "unet", "diffusion_pytorch_model.safetensors")
    )
    np.testing.assert_array_equal(
        np.asarray(loaded.unet.get_layer("output_conv").bias), tensors["conv_out.bias"].numpy()
    )

    with pytest.raises(FileExistsError, match="--overwrite"):
        _run("models", "import", diffusers_folder, "--out", str(model_folder))
    capsys.readouterr()


def test_import_options_and_summary(diffusers_folder, tmp_path, capsys):
    out = tmp_path / "epsilon"
    assert (
        _run(
            "models",
            "import",
            diffusers_folder,
            "--out",
            str(out),
            "--prediction-type",
            "epsilon",
            "--image-size",
            "24",
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "SD 2.x-style, epsilon, 24 px" in printed and str(out) in printed
    with open(out / "backbone.json") as file:
        config = json.load(file)
    assert (config["prediction_type"], config["image_size"]) == ("epsilon", 24)


def test_export_a_model_folder_to_a_single_file(model_folder, tmp_path):
    out = tmp_path / "out.safetensors"
    assert (
        _run(
            "models",
            "export",
            str(model_folder),
            "--format",
            "single-file",
            "--out",
            str(out),
            "--dtype",
            "float16",
        )
        == 0
    )
    tensors, metadata = read_checkpoint(out)
    assert "cond_stage_model.model.token_embedding.weight" in tensors
    assert tensors["model.diffusion_model.out.2.weight"].dtype == "float16"
    assert metadata["modelspec.prediction_type"] == "v"


def test_export_a_fine_tuning_run(model_folder, tmp_path):
    from studio.models import UNet

    with open(model_folder / "backbone.json") as file:
        unet_config = json.load(file)["unet"]["config"]
    unet = UNet(**unet_config)
    unet.load_weights(str(model_folder / "unet.weights.h5"))
    # What a DreamBooth run leaves: its settings and the trained UNet.
    run = tmp_path / "runs" / "dog"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": str(model_folder), "steps": 400}))
    bias = unet.get_layer("output_conv").bias
    bias.assign(np.asarray(bias) + 1.0)
    unet.save_weights(str(run / "unet.weights.h5"))
    out = tmp_path / "dog"
    assert _run("models", "export", str(run), "--format", "diffusers", "--out", str(out)) == 0
    tensors, _ = read_checkpoint(out / "unet" / "diffusion_pytorch_model.safetensors")
    np.testing.assert_array_equal(tensors["conv_out.bias"].numpy(), np.asarray(bias))
    assert os.path.isfile(out / "model_index.json")

    (run / "lora.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="LoRA"):
        _run("models", "export", str(run), "--format", "diffusers", "--out", str(tmp_path / "x"))


def test_export_refuses_an_unknown_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="neither a studio model folder"):
        _run(
            "models", "export", str(tmp_path), "--format", "diffusers", "--out", str(tmp_path / "x")
        )


def test_help_needs_no_keras():
    import subprocess
    import sys

    code = (
        "import argparse, sys\n"
        "from studio.cli import models_command\n"
        "parser = argparse.ArgumentParser()\n"
        "models_command.add_parser(parser.add_subparsers())\n"
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
