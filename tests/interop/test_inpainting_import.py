"""9-channel inpainting UNets import from diffusers folders and single files,
and generate what diffusers' `StableDiffusionInpaintPipeline` generates.

The tiny reference models of both families (tests/interop/conftest.py)
with their UNet replaced by a random 9-channel one (latents, mask,
masked-image latents in; latents out), as sd-v1-5-inpainting and SD 2
inpainting. Both pipelines get the same weights, text embeddings, start
latents, masked-image latents and mask; the images must agree in float32.
"""

import json
import os
import shutil

import numpy as np
import pytest

# Commands and pages generate here; their compiled loop is tested elsewhere.
pytestmark = pytest.mark.usefixtures("eager_tensorflow")

# Largest difference of the images in [0, 1] (acceptance: 1e-3).
PIXEL_ATOL = 1e-3
STEPS = 3
SEED = 5


@pytest.fixture(scope="module")
def inpainting_folder(reference, families, tmp_path_factory):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(1)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, cross_attention_dim=128, norm_num_groups=32, in_channels=9,
        out_channels=4, **families[reference.family]["unet"],
    )
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if parameter.ndim == 1:
                parameter.normal_(1.0 if name.endswith(".weight") else 0.0, 0.2)
    unet.eval()
    folder = tmp_path_factory.mktemp(f"inpainting-{reference.family}")
    shutil.copytree(reference.folder, folder, dirs_exist_ok=True)
    shutil.rmtree(folder / "unet")
    unet.save_pretrained(str(folder / "unet"))
    with open(folder / "model_index.json") as file:
        index = json.load(file)
    index["_class_name"] = "StableDiffusionInpaintPipeline"
    with open(folder / "model_index.json", "w") as file:
        json.dump(index, file)
    return folder, unet


def test_inpainting_unet_imports_and_matches_diffusers_inpaint_pipeline(
        reference, inpainting_folder):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    from PIL import Image

    from studio.errors import InvalidInputError
    from studio.interop import import_model
    from studio.pipelines import InpaintingMask, TextToImagePipeline

    folder, torch_unet = inpainting_folder
    backbone = import_model(str(folder))
    assert backbone.unet.input_channels == 9 and backbone.unet.latent_channels == 4
    pipeline = TextToImagePipeline(backbone)
    assert pipeline.is_inpainting_model
    with pytest.raises(InvalidInputError, match="inpainting model"):
        pipeline("a cat", num_steps=1)
    finals = []
    decode = pipeline._decode
    pipeline._decode = lambda latents: finals.append(np.asarray(latents)) or decode(latents)

    size = backbone.image_size
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), np.uint8)
    mask[4:20, 8:28] = 255
    prompt = "a red circle"
    pipeline(prompt, num_steps=STEPS, seed=SEED, init_image=image, mask=mask,
             guidance_scale=7.5, sampler="ddim", strength=1.0)

    # The studio's draws for image `SEED`: init-image encoding, start, masked-image encoding.
    draws = np.random.default_rng(SEED)
    shape = backbone.latent_shape(size, size)
    draws.standard_normal(shape, dtype=np.float32)
    start = draws.standard_normal(shape, dtype=np.float32)
    masked_noise = draws.standard_normal(shape, dtype=np.float32)
    pixels = backbone.image_preprocessor.to_model_range(image[None])
    masked_latents = np.asarray(backbone.encode_images(
        InpaintingMask(mask, size, size).masked(pixels), masked_noise[None]))
    context = np.asarray(backbone.encode_text(backbone.tokenizer([prompt]))["context"])
    negative = np.asarray(backbone.encode_text(backbone.tokenizer([""]))["context"])

    def nchw(array):
        return torch.from_numpy(np.ascontiguousarray(np.transpose(array, (0, 3, 1, 2))))

    scheduler = diffusers.DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
        beta_schedule="scaled_linear", prediction_type=backbone.prediction_type,
        steps_offset=1, set_alpha_to_one=False, clip_sample=False,
    )
    theirs = diffusers.StableDiffusionInpaintPipeline(
        vae=reference.vae, text_encoder=reference.text_encoder,
        tokenizer=None, unet=torch_unet, scheduler=scheduler, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    theirs.set_progress_bar_config(disable=True)
    with torch.no_grad():
        expected = theirs(
            prompt_embeds=torch.from_numpy(context),
            negative_prompt_embeds=torch.from_numpy(negative),
            image=Image.fromarray(image), mask_image=Image.fromarray(mask),
            latents=nchw(start[None]), masked_image_latents=nchw(masked_latents),
            height=size, width=size, num_inference_steps=STEPS, guidance_scale=7.5,
            strength=1.0, output_type="np",
        ).images
    ours = backbone.decode_latents(finals[0])
    ours = np.clip((np.asarray(ours) + 1.0) / 2.0, 0.0, 1.0)
    assert ours.shape == expected.shape
    difference = np.abs(ours - expected).max()
    print(f"inpainting pipeline vs diffusers, largest pixel difference: {difference:.2e}")
    assert difference <= PIXEL_ATOL, difference
    assert np.abs(expected - expected.mean()).max() > 0.05  # not a flat image


def test_inpainting_unet_goes_through_a_single_file(reference, inpainting_folder, tmp_path):
    from studio.interop import export_single_file, import_model, import_single_file

    folder, _ = inpainting_folder
    backbone = import_model(str(folder))
    path = export_single_file(backbone, tmp_path / "inpainting.safetensors")
    again = import_single_file(str(path), vocabulary=os.path.join(reference.folder, "tokenizer"))
    assert again.unet.input_channels == 9 and again.unet.latent_channels == 4
    for ours, theirs in zip(backbone.unet.weights, again.unet.weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    assert os.path.getsize(path) > 0
