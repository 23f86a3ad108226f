"""Diffusers folders: import equals the PyTorch reference; exports load in diffusers."""

import os

import numpy as np
import pytest

ATOL = 1e-4
# Largest differences our networks' numerics (GroupNorm epsilon 1e-5 for
# diffusers' 1e-6 in the VAE and the UNet's transformers; tanh GELU in the
# GEGLU) make against diffusers' on these tiny random models. Measured:
# UNet 4-5e-5, VAE encoder 4-5e-5, VAE decoder 1.2-1.6e-4, text encoder
# 2e-6 (no difference in numerics); with them aligned, all below 3e-6.
NUMERICS_GAP = {"unet": 1e-4, "vae_encoder": 1e-4, "vae_decoder": 3e-4, "text_encoder": 1e-5}


def test_import_matches_reference(
    reference,
    imported,
    inputs,
    keras_outputs,
    torch_outputs,
    studio_conventions,
    assert_outputs_close,
):
    with studio_conventions(reference.unet, reference.vae):
        expected = torch_outputs(reference.unet, reference.vae, reference.text_encoder, inputs)
    assert_outputs_close(keras_outputs(imported, inputs), expected, ATOL, reference.family)


def test_gap_to_diffusers_numerics(
    reference, imported, inputs, keras_outputs, torch_outputs, assert_outputs_close
):
    expected = torch_outputs(reference.unet, reference.vae, reference.text_encoder, inputs)
    assert_outputs_close(keras_outputs(imported, inputs), expected, NUMERICS_GAP, reference.family)


def test_import_reads_the_architecture_from_the_configs(reference, imported, families):
    spec = families[reference.family]
    unet = imported.unet
    assert unet.block_channels == tuple(spec["unet"]["block_out_channels"])
    assert unet.layers_per_block == spec["unet"]["layers_per_block"]
    assert unet.transformer_projection == (
        "linear" if spec["unet"]["use_linear_projection"] else "conv"
    )
    if reference.family == "sd1":
        assert (unet.num_heads, unet.head_size) == (8, None)
    else:
        assert (unet.num_heads, unet.head_size) == (None, 64)
    assert imported.text_encoder.intermediate_activation == spec["hidden_act"]
    assert imported.prediction_type == spec["prediction_type"]
    assert imported.tokenizer.pad_token == spec["pad_token"]
    assert imported.image_size == 2 * reference.unet.config.sample_size
    assert imported.latent_scale == pytest.approx(reference.vae.config.scaling_factor)


def test_export_loads_in_diffusers_and_transformers(
    reference,
    imported,
    inputs,
    tmp_path,
    keras_outputs,
    torch_outputs,
    studio_conventions,
    assert_outputs_close,
):
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    from studio.interop import export_diffusers_folder

    # A fine-tuned model's weights differ from what was imported.
    bias = imported.unet.get_layer("output_conv").bias
    bias.assign(np.asarray(bias) + 0.25)
    try:
        folder = export_diffusers_folder(imported, tmp_path / "exported")
        unet = diffusers.UNet2DConditionModel.from_pretrained(folder, subfolder="unet").eval()
        vae = diffusers.AutoencoderKL.from_pretrained(folder, subfolder="vae").eval()
        text_encoder = transformers.CLIPTextModel.from_pretrained(
            folder, subfolder="text_encoder"
        ).eval()
        with studio_conventions(unet, vae):
            reloaded = torch_outputs(unet, vae, text_encoder, inputs)
        assert_outputs_close(reloaded, keras_outputs(imported, inputs), ATOL, reference.family)
    finally:
        bias.assign(np.asarray(bias) - 0.25)

    pipeline = diffusers.StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    assert pipeline.scheduler.config.prediction_type == imported.prediction_type
    prompt = "a photo of a cat"
    assert (
        pipeline.tokenizer(prompt, padding="max_length").input_ids
        == imported.tokenizer([prompt])[0].tolist()
    )
    assert not [name for name in os.listdir(tmp_path) if name != "exported"]  # No leftovers.


def test_deprecated_attention_names_and_bin_weights_are_read(reference, imported, inputs, tmp_path):
    torch = pytest.importorskip("torch")
    import shutil

    from studio.interop import import_diffusers_folder

    folder = tmp_path / "old"
    shutil.copytree(reference.folder, folder)
    renames = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    state = {}
    for key, value in reference.vae.state_dict().items():
        for new, old in renames.items():
            key = key.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
        state[key] = value
    os.remove(folder / "vae" / "diffusion_pytorch_model.safetensors")
    torch.save(state, folder / "vae" / "diffusion_pytorch_model.bin")
    loaded = import_diffusers_folder(folder)
    for network in ("vae_encoder", "vae_decoder"):
        for ours, theirs in zip(
            getattr(loaded, network).get_weights(), getattr(imported, network).get_weights()
        ):
            np.testing.assert_array_equal(ours, theirs)
