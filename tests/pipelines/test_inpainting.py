"""Inpainting with an ordinary UNet: the mask's black region is kept, the white one obeys the prompt.

On `tiny-shapes` (32 px images, 4x VAE): the init image is a small green
triangle on the prompt's background, the mask a centred 24x24 square; the shapes classifier reads
the prompt's shape and colour in the result, and the ring outside the mask
stays the init image within the VAE's own round-trip error.
"""

import numpy as np
import pytest

from studio.datasets.shapes_scene import ShapesScene
from studio.datasets.shapes_world import ShapesWorld
from studio.errors import InvalidInputError
from studio.models import StableDiffusionBackbone
from studio.pipelines import InpaintingMask, TextToImagePipeline

SIZE = 32
PROMPTS = {
    "a red circle on a white background": ("red", "circle", "white"),
    "a blue square on a black background": ("blue", "square", "black"),
}
# The init image: a small green triangle on the prompt's background. (A
# shapeless image is outside what the tiny VAE learned: it round-trips plain
# gray 70 levels off.)
INIT_SHAPE = ("triangle", "green", "small", "plain", (0.5, 0.5))
IMAGES_PER_PROMPT = 20
STEPS = 10


def _centre_mask(border=4):
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[border:-border, border:-border] = 255
    return mask


@pytest.mark.large
def test_inpainting_keeps_the_outside_and_draws_the_prompt_inside(
        tiny_shapes_pipeline, read_shapes, monkeypatch):
    pipeline, backbone = tiny_shapes_pipeline, tiny_shapes_pipeline.backbone
    finals = []
    to_uint8 = backbone.image_preprocessor.to_uint8

    def decode(latents):
        finals.append(to_uint8(backbone.decode_latents(latents)))
        return finals[-1]

    monkeypatch.setattr(pipeline, "_decode", decode)
    mask = _centre_mask()
    outside = mask == 0
    obeyed, report = [], []
    for prompt, (colour, shape, background) in PROMPTS.items():
        shape_name, shape_colour, size, pattern, centre = INIT_SHAPE
        init = ShapesWorld(SIZE).render(
            ShapesScene(shape_name, shape_colour, background, size, pattern, centre))
        result = pipeline(prompt, num_images_per_prompt=IMAGES_PER_PROMPT, num_steps=STEPS,
                          seed=0, init_image=init, mask=mask)
        obeyed += [(c, s) == (colour, shape) for c, s, _ in read_shapes(result.images)]
        error = np.abs(result.images.astype(int) - init.astype(int))[:, outside]
        # The same latents decoded without the overlay of the init's pixels:
        # latent blending alone, which the decoder blurs across the edge.
        blended_only = np.abs(finals[-1].astype(int) - init.astype(int))[:, outside]
        # The VAE's own round trip of the init image, with the latents each
        # image kept (sampled with the first noise its seed draws).
        shape = backbone.latent_shape(SIZE, SIZE)
        noise = np.stack([np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
                          for seed in range(IMAGES_PER_PROMPT)])
        pixels = backbone.image_preprocessor.to_model_range(init[None])
        latents = backbone.encode_images(pixels, noise)
        round_trip = backbone.image_preprocessor.to_uint8(backbone.decode_latents(latents))
        round_trip_error = np.abs(round_trip.astype(int) - init.astype(int))[:, outside]
        report.append((prompt, error.mean(), error.max(), blended_only.mean(),
                       blended_only.max(), round_trip_error.mean(), round_trip_error.max()))
        print("outside the mask, mean/max levels: output, latent blending only, VAE round trip:",
              report[-1])
        assert error.max() <= round_trip_error.max(), report
    assert len(obeyed) >= 40
    print("prompt obeyed inside the mask:", np.mean(obeyed), "of", len(obeyed))
    assert np.mean(obeyed) >= 0.8, report


def test_mask_blur_and_padding_shape_the_mask():
    mask = np.zeros((16, 16), np.uint8)
    mask[6:10, 6:10] = 255
    plain = InpaintingMask(mask, 16, 16)
    np.testing.assert_array_equal(plain.binary, mask > 0)
    padded = InpaintingMask(mask, 16, 16, padding=2)
    assert padded.binary.sum() == 8 * 8 and padded.binary[4:12, 4:12].all()
    blurred = InpaintingMask(mask, 16, 16, blur=1.5)
    assert 0 < blurred.soft[5, 8] < 1 and blurred.soft[0, 0] < 1e-3
    assert blurred.soft[8, 8] > 0.5
    keep = plain.latent_keep_mask(4)
    assert keep.shape == (4, 4, 1)
    # The 4x4 square straddles the four centre cells, a quarter of each.
    np.testing.assert_allclose(keep[1:3, 1:3, 0], 0.75)
    np.testing.assert_allclose(keep[0, 0, 0], 1.0)
    assert plain.latent_binary_mask(2)[3:5, 3:5].all()
    image = np.ones((1, 16, 16, 3), np.float32)
    masked = plain.masked(image)
    assert masked[0, 8, 8].sum() == 0 and masked[0, 0, 0].sum() == 3


def test_bad_masks_are_clear_errors():
    pipeline = TextToImagePipeline(StableDiffusionBackbone.from_preset("tiny"))
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(InvalidInputError, match="init_image"):
        pipeline("a cat", num_steps=1, mask=np.ones((64, 64), np.uint8))
    with pytest.raises(InvalidInputError, match=r"init image's size .*Received: a mask of shape \(32, 32\)"):
        pipeline("a cat", num_steps=1, init_image=image, mask=np.ones((32, 32), np.uint8))
    with pytest.raises(InvalidInputError, match="all-black"):
        pipeline("a cat", num_steps=1, init_image=image, mask=np.zeros((64, 64), np.uint8))
    with pytest.raises(InvalidInputError, match="blur"):
        InpaintingMask(np.ones((8, 8)), 8, 8, blur=-1)


def test_ordinary_unet_keeps_the_init_latents_where_the_mask_is_black():
    # The random tiny VAE's attention block mixes all pixels, so this checks
    # the final latents: after the last step the kept cells are the init
    # image's latents, whatever the prompt.
    pipeline = TextToImagePipeline(StableDiffusionBackbone.from_preset("tiny"))
    finals = []
    decode = pipeline._decode
    pipeline._decode = lambda latents: finals.append(np.asarray(latents)) or decode(latents)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255  # repaint the right half (latent columns 4-7)
    for prompt in ("a cat", "a dog"):
        result = pipeline(prompt, num_steps=3, seed=2, init_image=image, mask=mask,
                          sampler="euler_a", mask_blur=2, mask_padding=1)
    backbone = pipeline.backbone
    first_noise = np.random.default_rng(2).standard_normal(backbone.latent_shape(64, 64),
                                                           dtype=np.float32)
    clean = np.asarray(backbone.encode_images(
        backbone.image_preprocessor.to_model_range(image[None]), first_noise[None]))
    # Columns 0-2 are out of reach of the padding (1 px) and blur (3 sigma = 6 px).
    kept = np.s_[:, :, :3]
    np.testing.assert_allclose(finals[0][kept], clean[kept], atol=1e-6)
    np.testing.assert_allclose(finals[1][kept], clean[kept], atol=1e-6)
    assert np.abs(finals[0][:, :, 5:] - finals[1][:, :, 5:]).max() > 0.01
    assert result.parameters[0].extra["Mask blur"] == "2"
