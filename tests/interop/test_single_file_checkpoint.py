"""Single files: exports open in diffusers; imports equal the PyTorch reference."""

import os

import numpy as np
import pytest

# float32, against diffusers and transformers as they are.
ATOL = 1e-4


@pytest.fixture(scope="module")
def single_file(imported, reference, tmp_path_factory):
    """The imported reference model, exported as an original-LDM single file."""
    from studio.interop import export_single_file

    path = tmp_path_factory.mktemp("single") / f"tiny-{reference.family}.safetensors"
    return str(export_single_file(imported, path))


def test_export_opens_in_diffusers(
    reference,
    imported,
    single_file,
    inputs,
    tmp_path,
    keras_outputs,
    torch_outputs,
    assert_outputs_close,
):
    diffusers = pytest.importorskip("diffusers")
    from studio.interop import export_diffusers_folder

    unet = diffusers.UNet2DConditionModel.from_single_file(
        single_file, config=reference.folder, subfolder="unet"
    ).eval()
    vae = diffusers.AutoencoderKL.from_single_file(
        single_file, config=reference.folder, subfolder="vae"
    ).eval()
    # The pipeline converts the text encoder (CLIP or OpenCLIP layout); its
    # configs come from a diffusers folder of the same model.
    config = export_diffusers_folder(imported, tmp_path / "config")
    pipeline = diffusers.StableDiffusionPipeline.from_single_file(
        single_file, config=config, safety_checker=None, local_files_only=True
    )
    reloaded = torch_outputs(unet, vae, pipeline.text_encoder.eval(), inputs)
    assert_outputs_close(reloaded, keras_outputs(imported, inputs), ATOL, reference.family)


def test_import_matches_reference(
    reference,
    single_file,
    inputs,
    families,
    keras_outputs,
    torch_outputs,
    assert_outputs_close,
):
    from studio.interop import import_single_file

    backbone = import_single_file(
        single_file, vocabulary=os.path.join(reference.folder, "tokenizer")
    )
    expected = torch_outputs(reference.unet, reference.vae, reference.text_encoder, inputs)
    assert_outputs_close(keras_outputs(backbone, inputs), expected, ATOL, reference.family)
    # What the shapes cannot show came back through the ModelSpec metadata.
    assert backbone.prediction_type == families[reference.family]["prediction_type"]
    assert backbone.image_size == 16
    assert backbone.tokenizer.pad_token == families[reference.family]["pad_token"]


def test_ckpt_imports_like_safetensors(reference, imported, single_file, tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from studio.interop import import_single_file

    path = tmp_path / "model.ckpt"
    # As the original training code saved it: Lightning's dict, a step counter.
    torch.save({"state_dict": load_file(single_file), "global_step": 470000}, path)
    tokenizer = os.path.join(reference.folder, "tokenizer")
    from_ckpt = import_single_file(
        path, vocabulary=tokenizer, prediction_type="epsilon", image_size=512
    )
    for name, network in from_ckpt.components.items():
        for ours, theirs in zip(network.get_weights(), imported.components[name].get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    assert (from_ckpt.prediction_type, from_ckpt.image_size) == ("epsilon", 512)


def test_float16_export(reference, imported, inputs, tmp_path, keras_outputs, assert_outputs_close):
    from studio.interop import export_single_file, import_single_file
    from studio.interop.checkpoint_reader import read_checkpoint

    path = export_single_file(imported, tmp_path / "half.safetensors", dtype="float16")
    tensors, _ = read_checkpoint(path)
    assert {tensor.dtype for tensor in tensors.values()} == {"float16"}
    assert os.path.getsize(path) < 0.6 * sum(4 * np.prod(t.shape) for t in tensors.values())
    loaded = import_single_file(path, vocabulary=os.path.join(reference.folder, "tokenizer"))
    expected = keras_outputs(imported, inputs)
    assert_outputs_close(
        keras_outputs(loaded, inputs), expected, 0.05, f"{reference.family} float16"
    )
