"""`--model PATH`: a diffusers folder or a single file wherever a preset is taken.

`generate` and the trainers load their model with
`studio.interop.load_backbone`, which converts such paths with
`studio.interop.import_model` (and gives presets and saved folders to
`StableDiffusionBackbone.from_preset`); the converted model must generate exactly
what the same model saved by the studio generates.
"""

import os

import numpy as np
import pytest
from PIL import Image

from studio.cli.main import main
from studio.images import read_parameters
from studio.interop import export_diffusers_folder, export_single_file

# Commands and pages generate here; their compiled loop is tested elsewhere.
pytestmark = pytest.mark.usefixtures("eager_tensorflow")


@pytest.fixture(scope="module", autouse=True)
def without_xla():
    """Runs the guided UNet without XLA: compiling it for each of the three
    models costs more than their two steps; what `jit_compile` does is
    covered by tests/pipelines."""
    from studio.pipelines import TextToImagePipeline

    original = TextToImagePipeline.__init__

    def __init__(self, backbone, jit_compile=True):
        original(self, backbone, jit_compile=False)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TextToImagePipeline, "__init__", __init__)
        yield


@pytest.fixture(scope="module")
def saved(build_studio_backbone, tmp_path_factory):
    """One tiny SD 1.x-style model as a studio folder, a diffusers folder and a single file."""
    # With diffusers' numerics, which imports choose: with KerasCV's (the
    # default) a pixel or two would differ by one level.
    backbone = build_studio_backbone("sd1", seed=5, diffusers_numerics=True)
    root = tmp_path_factory.mktemp("model-option")
    diffusers = export_diffusers_folder(backbone, root / "tiny-diffusers")
    return {
        "studio": backbone.save_to_preset(str(root / "tiny-studio")),
        "diffusers": diffusers,
        "single_file": str(export_single_file(backbone, root / "tiny-single.safetensors")),
        # The byte-level vocabulary is not CLIP's: single files need it given.
        "tokenizer": os.path.join(diffusers, "tokenizer"),
    }


def _generate(out, model, *extra):
    argv = [
        "generate", "--model", model, "--prompt", "a photo of a cat", "--steps", "2",
        "--seed", "3", "--out", str(out), *extra,
    ]  # fmt: skip
    assert main(argv) == 0
    [name] = [name for name in os.listdir(out) if name.endswith(".png")]
    return np.asarray(Image.open(out / name)), read_parameters(out / name)


@pytest.fixture(scope="module")
def expected(saved, tmp_path_factory):
    """What the model generates from the studio's own folder."""
    pixels, _ = _generate(tmp_path_factory.mktemp("from-studio-folder"), saved["studio"])
    # Equal pixels below must mean equal models, not two saturated images.
    assert pixels.std() > 1 and 0.05 < np.mean((pixels > 0) & (pixels < 255))
    return pixels


def test_generate_takes_a_diffusers_folder(saved, expected, tmp_path):
    pixels, parameters = _generate(tmp_path, saved["diffusers"])
    np.testing.assert_array_equal(pixels, expected)
    assert parameters.model == "tiny-diffusers"


def test_generate_takes_a_single_file(saved, expected, tmp_path):
    pixels, parameters = _generate(
        tmp_path, saved["single_file"], "--vocabulary", saved["tokenizer"]
    )
    np.testing.assert_array_equal(pixels, expected)
    assert parameters.model == "tiny-single"


def test_load_backbone_passes_the_precision_and_refuses_preset_options(saved):
    from studio.interop import load_backbone

    backbone = load_backbone(saved["diffusers"], dtype="mixed_float16")
    assert {network.dtype_policy.name for network in backbone.components.values()} == {
        "mixed_float16"
    }
    with pytest.raises(ValueError, match="weights='elsewhere'"):
        load_backbone(saved["diffusers"], weights="elsewhere")
    with pytest.raises(ValueError, match="load_weights=False"):
        load_backbone(saved["single_file"], load_weights=False)
    with pytest.raises(ValueError, match="own tokenizer"):
        load_backbone(saved["diffusers"], vocabulary=saved["tokenizer"])


def test_load_backbone_takes_presets_and_saved_folders(saved):
    from studio.interop import load_backbone

    assert load_backbone(saved["studio"]).name == "tiny-studio"
    assert load_backbone("tiny", load_weights=False).name == "tiny"


def test_from_preset_sends_models_to_convert_to_load_backbone(saved):
    from studio.models import StableDiffusionBackbone

    for source in (saved["diffusers"], saved["single_file"]):
        with pytest.raises(ValueError, match="studio.interop.load_backbone"):
            StableDiffusionBackbone.from_preset(source)


def test_generate_names_an_unsupported_file(tmp_path, capsys):
    """A file that is no SD 1.x / 2.x model is one message, not a traceback."""
    from safetensors.numpy import save_file

    path = tmp_path / "sdxl.safetensors"
    save_file({"conditioner.embedders.0.model.ln_final.weight": np.zeros(2, "float32")}, str(path))
    argv = ["generate", "--model", str(path), "--prompt", "a cat", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "SD-XL" in error and "conditioner.embedders" in error
    assert not os.path.exists(tmp_path / "out")
