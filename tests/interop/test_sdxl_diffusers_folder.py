"""Acceptance 2: a tiny SDXL diffusers pipeline imports, generates, and exports back.

The folder is written by `StableDiffusionXLPipeline.save_pretrained`
(tests/conftest.py's `sdxl_reference`); the export is loaded by
`StableDiffusionXLPipeline.from_pretrained` and compared weight by weight.
"""

import json
import shutil

import numpy as np
import pytest

from studio.interop import UnsupportedModelError, import_model


@pytest.fixture(scope="module")
def exported(sdxl_imported, tmp_path_factory):
    from studio.interop import export_diffusers_folder

    folder = tmp_path_factory.mktemp("sdxl-export") / "model"
    return export_diffusers_folder(sdxl_imported, str(folder))


def test_imports_as_the_sdxl_family(sdxl_reference, sdxl_imported):
    assert sdxl_imported.family == "sdxl"
    assert sdxl_imported.image_size == sdxl_reference.sizes["image_size"]
    assert sdxl_imported.tokenizer.pad_token_id == sdxl_imported.tokenizer.end_token_id
    assert sdxl_imported.tokenizer_2.id_to_token(sdxl_imported.tokenizer_2.pad_token_id) == "!"
    assert type(sdxl_imported).__name__ == "SDXLBackbone"


def test_generates_text_to_image_with_sdxl_conditioning(sdxl_imported):
    from studio.pipelines import TextToImagePipeline

    pipeline = TextToImagePipeline(sdxl_imported, jit_compile=False)
    result = pipeline(["a photo of a cat", "a red fox"], num_steps=2, seed=1, batch_size=2)
    cat, fox = result.images
    assert result.images.shape == (2, 16, 16, 3) and result.images.dtype == np.uint8
    assert np.abs(cat.astype(int) - fox.astype(int)).max() > 0
    # The size conditioning follows the requested size.
    conditioning = pipeline.encode_conditioning(["a cat"], 24, 32)
    np.testing.assert_array_equal(conditioning["time_ids"], [[24, 32, 0, 0, 24, 32]])


def test_export_loads_in_diffusers_with_equal_weights(sdxl_reference, exported):
    import diffusers

    loaded = diffusers.StableDiffusionXLPipeline.from_pretrained(exported)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        original = getattr(sdxl_reference, name).state_dict()
        reloaded = getattr(loaded, name).state_dict()
        keys = {k for k in original if not k.endswith("position_ids")}
        assert keys == {k for k in reloaded if not k.endswith("position_ids")}, name
        for key in keys:
            np.testing.assert_array_equal(
                reloaded[key].numpy(), original[key].numpy(), err_msg=f"{name}: {key}"
            )
    for name in ("tokenizer", "tokenizer_2"):
        text = ["a photo of a cat"]
        ids = getattr(loaded, name)(text, padding="max_length", max_length=77).input_ids
        expected = getattr(sdxl_reference.pipeline, name)(
            text, padding="max_length", max_length=77
        ).input_ids
        assert ids == expected, name


def _copy(source, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(source, folder)
    return folder


def _edit(path, **changes):
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_refiner_is_refused_in_one_line(sdxl_reference, tmp_path):
    folder = _copy(sdxl_reference.folder, tmp_path)
    shutil.rmtree(folder / "text_encoder")
    shutil.rmtree(folder / "tokenizer")
    _edit(
        folder / "model_index.json",
        _class_name="StableDiffusionXLImg2ImgPipeline",
        requires_aesthetics_score=True,
        text_encoder=[None, None],
        tokenizer=[None, None],
    )
    with pytest.raises(UnsupportedModelError, match="refiner") as error:
        import_model(folder)
    assert "\n" not in str(error.value)


def test_inpainting_is_refused_in_one_line(sdxl_reference, tmp_path):
    folder = _copy(sdxl_reference.folder, tmp_path)
    _edit(folder / "model_index.json", _class_name="StableDiffusionXLInpaintPipeline")
    with pytest.raises(UnsupportedModelError, match="inpainting"):
        import_model(folder)
    _edit(folder / "model_index.json", _class_name="StableDiffusionXLPipeline")
    _edit(folder / "unet" / "config.json", in_channels=9)
    with pytest.raises(UnsupportedModelError, match="inpainting") as error:
        import_model(folder)
    assert "\n" not in str(error.value)


# Imports and exports the tiny model once more (about 30 s on a busy 2-core machine).
@pytest.mark.large
def test_models_import_and_export_commands_take_sdxl(sdxl_reference, tmp_path, capsys):
    import argparse

    from studio.cli import models_command

    def run(*argv):
        parser = argparse.ArgumentParser()
        models_command.add_parser(parser.add_subparsers(dest="command"))
        args = parser.parse_args(argv)
        return args.run(args)

    saved = tmp_path / "imported"
    assert run("models", "import", sdxl_reference.folder, "--out", str(saved)) == 0
    assert "SD-XL" in capsys.readouterr().out
    assert json.loads((saved / "backbone.json").read_text())["family"] == "sdxl"
    out = tmp_path / "exported"
    assert run("models", "export", str(saved), "--format", "diffusers", "--out", str(out)) == 0
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
