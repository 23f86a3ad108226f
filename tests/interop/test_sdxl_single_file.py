"""SD-XL single files (SGM layout): export, diffusers' own reader, and import back."""

import numpy as np
import pytest
from safetensors.numpy import save_file

from studio.interop import UnsupportedModelError, import_model


@pytest.fixture(scope="module")
def single_file(sdxl_imported, tmp_path_factory):
    from studio.interop import export_single_file

    path = tmp_path_factory.mktemp("sdxl-single") / "tiny_sdxl.safetensors"
    return export_single_file(sdxl_imported, str(path))


def test_diffusers_from_single_file_reads_our_file_with_equal_weights(
    sdxl_reference, single_file
):
    import diffusers

    loaded = diffusers.StableDiffusionXLPipeline.from_single_file(
        single_file, config=sdxl_reference.folder, local_files_only=True
    )
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        original = getattr(sdxl_reference, name).state_dict()
        reloaded = getattr(loaded, name).state_dict()
        for key, value in original.items():
            if key.endswith("position_ids"):
                continue
            np.testing.assert_array_equal(
                reloaded[key].numpy(), value.numpy(), err_msg=f"{name}: {key}"
            )


def test_imports_back_to_the_same_model(sdxl_reference, sdxl_imported, single_file):
    backbone = import_model(
        single_file, vocabulary=f"{sdxl_reference.folder}/tokenizer"
    )
    assert backbone.family == "sdxl" and backbone.image_size == sdxl_imported.image_size
    prompts = ["a photo of a cat", ""]
    ids = backbone.tokenizer(prompts)
    np.testing.assert_array_equal(ids, sdxl_imported.tokenizer(prompts))
    np.testing.assert_array_equal(backbone.tokenizer_2(prompts), sdxl_imported.tokenizer_2(prompts))
    ours, theirs = backbone.encode_text(ids), sdxl_imported.encode_text(ids)
    for name in ours:
        np.testing.assert_array_equal(np.asarray(ours[name]), np.asarray(theirs[name]))
    for name, network in sdxl_imported.components.items():
        for mine, other in zip(backbone.components[name].weights, network.weights):
            np.testing.assert_array_equal(mine.numpy(), other.numpy(), err_msg=name)


def test_refiner_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "sd_xl_refiner.safetensors"
    zeros = np.zeros((4, 4), "float32")
    save_file(
        {
            "conditioner.embedders.0.model.token_embedding.weight": zeros,
            "conditioner.embedders.0.model.text_projection": zeros,
            "model.diffusion_model.input_blocks.0.0.weight": np.zeros((8, 4, 3, 3), "float32"),
        },
        str(path),
    )
    with pytest.raises(UnsupportedModelError, match="refiner") as error:
        import_model(path)
    assert "\n" not in str(error.value)
