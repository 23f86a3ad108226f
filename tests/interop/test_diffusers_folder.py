"""Diffusers folders: import equals the PyTorch reference; exports load in diffusers."""

import os

import numpy as np
import pytest

# float32, against diffusers and transformers as they are.
ATOL = 1e-4
# Largest differences KerasCV's numerics (our networks' defaults) make
# against diffusers' on these tiny random models, measured before the
# importers chose diffusers' numerics: UNet 4-5e-5, VAE encoder 4-5e-5,
# VAE decoder 1.2-1.6e-4; the text encoder's numerics are the same.
KERAS_CV_NUMERICS_GAP = {"unet": 1e-4, "vae_encoder": 1e-4, "vae_decoder": 3e-4}
# Smallest of those gaps a numerics option must make, far above round-off
# (imported networks match diffusers to about 3e-6).
MEANINGFUL_GAP = 1e-5
# Arguments of our networks that choose their numerics.
NUMERICS_ARGUMENTS = {
    "unet": ("resnet_norm_epsilon", "transformer_norm_epsilon", "gelu_approximate"),
    "vae_encoder": ("norm_epsilon",),
    "vae_decoder": ("norm_epsilon",),
}
DIFFUSERS_NUMERICS = {
    "unet": {
        "resnet_norm_epsilon": 1e-5,
        "transformer_norm_epsilon": 1e-6,
        "gelu_approximate": False,
    },
    "vae_encoder": {"norm_epsilon": 1e-6},
    "vae_decoder": {"norm_epsilon": 1e-6},
}


def test_import_matches_reference(
    reference, imported, inputs, keras_outputs, torch_outputs, assert_outputs_close
):
    expected = torch_outputs(reference.unet, reference.vae, reference.text_encoder, inputs)
    assert_outputs_close(keras_outputs(imported, inputs), expected, ATOL, reference.family)


def test_import_chooses_diffusers_numerics_and_keras_cv_stays_the_default(
    reference,
    imported,
    inputs,
    keras_outputs,
    torch_outputs,
    keras_cv_numerics,
    assert_outputs_close,
):
    from studio.models import StableDiffusionBackbone

    for name, numerics in DIFFUSERS_NUMERICS.items():
        config = imported.components[name].get_config()
        assert {key: config[key] for key in numerics} == numerics, name
    # The same networks without the numerics arguments: KerasCV's defaults.
    defaults = {}
    for name, network in imported.components.items():
        config = {
            key: value
            for key, value in network.get_config().items()
            if key not in NUMERICS_ARGUMENTS.get(name, ())
        }
        defaults[name] = type(network).from_config(config)
        defaults[name].set_weights(network.get_weights())
    keras_cv = keras_outputs(
        StableDiffusionBackbone(
            **defaults,
            tokenizer=imported.tokenizer,
            prediction_type=imported.prediction_type,
            image_size=imported.image_size,
        ),
        inputs,
    )
    diffusers = torch_outputs(reference.unet, reference.vae, reference.text_encoder, inputs)
    for name, limit in KERAS_CV_NUMERICS_GAP.items():
        gap = float(np.max(np.abs(keras_cv[name] - diffusers[name])))
        assert MEANINGFUL_GAP < gap <= limit, f"{reference.family} {name}: gap {gap}"
    # ... and what they compute is exactly KerasCV's numerics.
    with keras_cv_numerics(reference.unet, reference.vae):
        expected = torch_outputs(reference.unet, reference.vae, reference.text_encoder, inputs)
    assert_outputs_close(keras_cv, expected, ATOL / 10, f"{reference.family} KerasCV numerics")


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


def test_unet_norm_eps_is_read_and_written_back():
    from studio.interop.diffusers_configs import (
        unet_arguments_from_diffusers,
        unet_config_to_diffusers,
    )
    from studio.models import UNet

    config = {
        "block_out_channels": [32, 64],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": 32,
        "attention_head_dim": 2,
    }
    arguments, _ = unet_arguments_from_diffusers(config, "unet")
    assert {key: arguments[key] for key in DIFFUSERS_NUMERICS["unet"]} == DIFFUSERS_NUMERICS["unet"]
    arguments, _ = unet_arguments_from_diffusers({**config, "norm_eps": 1e-6}, "unet")
    assert arguments["resnet_norm_epsilon"] == 1e-6
    unet = UNet(**arguments)
    assert unet_config_to_diffusers(unet, sample_size=8)["norm_eps"] == 1e-6
