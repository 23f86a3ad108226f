"""Text-to-image and image-to-image generation with classifier-free guidance."""

import dataclasses

import numpy as np
from keras import ops

from studio.errors import InvalidInputError
from studio.images.generation_parameters import GenerationParameters
from studio.models.winograd_convolution import winograd_by_default
from studio.pipelines.inpainting_mask import InpaintingMask
from studio.pipelines.latent_decoder import LatentDecoder
from studio.pipelines.sampling_loop import SamplingLoop
from studio.pipelines.step_report import predict_with_step_reports
from studio.schedulers import get_scheduler

MAX_SEED = 2**32 - 1


@dataclasses.dataclass
class GeneratedImages:
    """Images with how each was made.

    Attributes:
        images: uint8 array (count, height, width, 3).
        parameters: one `GenerationParameters` per image.
    """

    images: np.ndarray
    parameters: list


class TextToImagePipeline:
    """Generates images from prompts with a `StableDiffusionBackbone`.

    Image `i` of a call uses seed `seed + i` for all of its noise, drawn with
    NumPy, so any image can be reproduced alone from its recorded seed on
    any backend (bit for bit with the same batch size; another batch size
    changes float rounding inside the networks by about one pixel level).

    It uses only the backbone's seam (`studio.models.DiffusionBackbone`):
    `tokenizer`, `encode_text`, `encode_images`, `decode_latents`,
    `latent_shape` and `denoiser`, so a `TokenLookupView` (placeholder
    tokens) generates like the backbone itself.

    Args:
        backbone: a `StableDiffusionBackbone`, or a view of one.
        jit_compile: how the sampling loop and the latent decoder
            (`LatentDecoder`) are compiled (XLA on TensorFlow,
            jit on JAX): True, False, or "auto" (the default): compiled on
            accelerators and under JAX; TensorFlow on a CPU runs a graph
            without XLA, since XLA:CPU takes longer to compile the loop
            than the graph takes for a whole generation.
        winograd: whether the sampling loop's and the decoder's larger 3x3
            convolutions use Winograd's algorithm (`UNetConv2D`): True,
            False, or "auto" (the default): when the backend computes on a
            CPU in float32 (SD 1.x at 256 px on 2 cores: TensorFlow
            26.6 -> 20.0 s at batch 1, 90.6 -> 66.4 s at batch 4, in
            separate runs; `benchmarks/BENCHMARKS.md`). Its
            images differ from the direct convolution's by float rounding
            (about 1e-5 of the range per convolution); pass False to
            compare with another implementation to the last bits.

    The whole denoising loop (guided UNet and sampler step, every step) is
    one compiled call (`SamplingLoop`), compiled once per (steps, size,
    batch); the sampler's schedule is passed to it as data.

    Example:

    ```python
    pipeline = TextToImagePipeline(StableDiffusionBackbone.from_preset("tiny"))
    result = pipeline("a photo of a cat", num_steps=20, seed=1)
    ```
    """

    def __init__(self, backbone, jit_compile="auto", winograd="auto"):
        self.backbone = backbone
        if winograd == "auto":
            winograd = winograd_by_default(backbone.denoiser.dtype_policy.compute_dtype)
        elif not isinstance(winograd, bool):
            raise ValueError(f'winograd must be True, False or "auto", got {winograd!r}')
        self.winograd = winograd
        self.sampling_loop = SamplingLoop(backbone.denoiser, winograd=winograd)
        self.sampling_loop.compile(jit_compile=jit_compile)
        self.latent_decoder = LatentDecoder(backbone, winograd=winograd)
        self.latent_decoder.compile(jit_compile=jit_compile)

    def encode_prompts(self, prompts):
        """Returns the text encoder's context for a list of prompts (numpy)."""
        token_ids = self.backbone.tokenizer(list(prompts))
        context = self.backbone.encode_text(token_ids)["context"]
        return ops.convert_to_numpy(context).astype("float32")

    def encode_conditioning(self, prompts, height, width):
        """Everything the denoiser is conditioned on, for prompts and an image size (numpy).

        The backbone's `encode_text` dict; a family with size conditioning
        (SDXL's `time_ids`, via the backbone's `time_ids(height, width)`)
        gets the ids of an uncropped `height` x `width` image.
        """
        token_ids = self.backbone.tokenizer(list(prompts))
        conditioning = {
            name: ops.convert_to_numpy(value).astype("float32")
            for name, value in self.backbone.encode_text(token_ids).items()
        }
        if "time_ids" in conditioning:
            ids = self.backbone.time_ids(height, width)
            conditioning["time_ids"] = np.tile(ids[None], (len(prompts), 1))
        return conditioning

    def __call__(
        self,
        prompt,
        negative_prompt="",
        num_images_per_prompt=1,
        num_steps=50,
        guidance_scale=7.5,
        seed=None,
        height=None,
        width=None,
        sampler="ddim",
        init_image=None,
        strength=0.8,
        batch_size=None,
        callback=None,
        mask=None,
        mask_blur=0.0,
        mask_padding=0,
    ):
        """Generates images.

        Args:
            prompt: a prompt or a list of prompts.
            negative_prompt: a string for all prompts, or one per prompt.
            num_images_per_prompt: images made for each prompt.
            num_steps: sampling steps (fewer are run for image-to-image:
                `int(num_steps * strength)`).
            guidance_scale: classifier-free guidance scale.
            seed: the first image's seed (None: a random one, recorded).
            height: image height in pixels, a multiple of 8 (default: the
                model's resolution).
            width: image width in pixels, a multiple of 8.
            sampler: a scheduler name ("ddim", "euler", "euler_a",
                "dpmpp_2m") or its A1111 name.
            init_image: None, or a uint8 image (height, width, 3) to start
                from (image-to-image); its size sets the output size.
            strength: how much of `init_image` is replaced by noise, in (0, 1].
            batch_size: images per UNet batch (default: all at once).
            mask: None, or (with `init_image`) an inpainting mask of its size:
                white is generated anew, black kept (see `InpaintingMask`).
                An inpainting UNet (9 input channels) reads the mask and the
                masked image; any other UNet keeps the black region by
                replacing its latents after every step with the init
                image's, noised to the step's level (A1111's inpainting).
                The decoded images then get the init image's pixels back
                where the (blurred) mask is below 1, as A1111's overlay:
                the VAE's decoder would otherwise blend the new content
                into the kept region.
                With `strength=1` the start is pure noise, as diffusers'.
            mask_blur: Gaussian blur of the mask, in pixels.
            mask_padding: pixels by which the region to repaint grows.
            callback: called as `callback(step, total_steps)` as each step
                of each batch finishes (for progress bars), on the calling
                thread; TensorFlow under XLA reports a batch's steps when
                it ends. An error it raises is raised after the batch.

        Returns:
            A `GeneratedImages`.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negatives = (
            [negative_prompt] * len(prompts)
            if isinstance(negative_prompt, str)
            else list(negative_prompt)
        )
        if len(negatives) != len(prompts):
            raise InvalidInputError(
                "Expected one negative prompt, or one per prompt. Received: "
                f"{len(prompts)} prompts and {len(negatives)} negative prompts"
            )
        if init_image is not None:
            init_image = np.asarray(init_image)
            height, width = init_image.shape[:2]
        if mask is None and self.is_inpainting_model:
            raise InvalidInputError(
                f"{self.backbone.name} is an inpainting model (its UNet reads a mask and a "
                "masked image): give an init image and a mask (`--init-image`, `--mask`)."
            )
        if mask is not None:
            if init_image is None:
                raise InvalidInputError(
                    "A mask needs the image it applies to: pass `init_image` with `mask`."
                )
            mask = InpaintingMask(mask, height, width, blur=mask_blur, padding=mask_padding)
        height = int(height or self.backbone.image_size)
        width = int(width or self.backbone.image_size)
        factor = self.backbone.latent_downsampling
        for label, value in (("height", height), ("width", width)):
            if value <= 0 or value % factor:
                raise InvalidInputError(
                    f"`{label}` must be a positive multiple of {factor}. "
                    f"Received: {label}={value}"
                )
        if not 0.0 < strength <= 1.0:
            raise InvalidInputError(f"`strength` must be in (0, 1]. Received: strength={strength}")
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % MAX_SEED)
        count = len(prompts) * num_images_per_prompt
        per_image_prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        per_image_negatives = [n for n in negatives for _ in range(num_images_per_prompt)]
        seeds = [(seed + index) % (MAX_SEED + 1) for index in range(count)]
        batch_size = batch_size or count

        images, sampler_name = [], None
        for start in range(0, count, batch_size):
            stop = min(start + batch_size, count)
            scheduler = self._scheduler(sampler)
            sampler_name = scheduler.a1111_name
            batch = self._generate_batch(
                scheduler,
                per_image_prompts[start:stop],
                per_image_negatives[start:stop],
                seeds[start:stop],
                num_steps,
                guidance_scale,
                height,
                width,
                init_image,
                strength,
                callback,
                mask,
            )
            images.append(batch)

        extra = {"Denoising strength": str(strength)} if init_image is not None else {}
        if mask is not None:
            extra.update({"Mask blur": str(mask_blur), "Mask padding": str(mask_padding)})
        parameters = [
            GenerationParameters(
                prompt=per_image_prompts[index],
                negative_prompt=per_image_negatives[index],
                steps=num_steps,
                sampler=sampler_name,
                guidance_scale=guidance_scale,
                seed=seeds[index],
                width=width,
                height=height,
                model=self.backbone.name,
                extra=dict(extra),
            )
            for index in range(count)
        ]
        images = np.concatenate(images, axis=0)
        if mask is not None:
            images = mask.overlay(images, init_image)
        return GeneratedImages(images, parameters)

    def _scheduler(self, sampler):
        return get_scheduler(
            sampler,
            prediction_type=self.backbone.prediction_type,
            **self.backbone.noise_schedule,
        )

    def _generate_batch(
        self,
        scheduler,
        prompts,
        negatives,
        seeds,
        num_steps,
        guidance_scale,
        height,
        width,
        init_image,
        strength,
        callback,
        mask=None,
    ):
        generators = [np.random.default_rng(seed) for seed in seeds]
        latent_shape = self.backbone.latent_shape(height, width)

        def noise():
            return np.stack(
                [g.standard_normal(latent_shape, dtype=np.float32) for g in generators]
            )

        conditioning = self.encode_conditioning(prompts, height, width)
        unconditional = self.encode_conditioning(negatives, height, width)
        scheduler.set_timesteps(num_steps, strength=strength if init_image is not None else 1.0)
        timesteps = scheduler.timesteps
        inputs = {}
        if init_image is None:
            latents = noise() * scheduler.init_noise_sigma
        else:
            pixels = self.backbone.image_preprocessor.to_model_range(init_image[None])
            clean = self._encode_image(pixels, noise())
            start_noise = noise()
            first = np.full((len(seeds),), timesteps[0])
            if mask is not None and strength == 1.0:
                latents = start_noise * scheduler.init_noise_sigma
            else:
                latents = ops.convert_to_numpy(scheduler.add_noise(clean, start_noise, first))
            if mask is not None:
                inputs = self._inpainting_inputs(scheduler, mask, pixels, clean, start_noise, noise)
        # Drawn after the start, one per step, for samplers that add noise.
        step_noise = np.stack([noise() for _ in timesteps])
        latents = predict_with_step_reports(
            self.sampling_loop,
            {
                "latents": np.asarray(latents, np.float32),
                "context": conditioning,
                "unconditional_context": unconditional,
                "guidance_scale": np.full((len(seeds),), guidance_scale, dtype=np.float32),
                "noise": step_noise,
                "table": scheduler.step_table(),
                **inputs,
            },
            len(timesteps),
            callback,
        )
        return self._decode(latents)

    @property
    def is_inpainting_model(self):
        """Whether the UNet reads a mask and masked image besides the latents."""
        channels = getattr(self.backbone.denoiser, "input_channels", None)
        return channels == 2 * self.backbone.latent_channels + 1

    def _inpainting_inputs(self, scheduler, mask, pixels, clean, start_noise, noise):
        """The `SamplingLoop`'s inputs that keep what the mask keeps."""
        factor = self.backbone.latent_downsampling
        count = len(clean)
        if self.is_inpainting_model:
            # The masked image's latents, sampled with each image's next noise.
            masked = self._encode_image(mask.masked(pixels), noise())
            binary = np.broadcast_to(mask.latent_binary_mask(factor), (count, *masked.shape[1:3], 1))
            return {"conditioning": np.concatenate([binary, masked], axis=-1).astype(np.float32)}
        # The init image's latents at the level of the step after each step
        # (clean after the last), noised with the start's noise.
        timesteps = scheduler.timesteps
        kept = [
            ops.convert_to_numpy(
                scheduler.add_noise(clean, start_noise, np.full((count,), timestep))
            )
            for timestep in timesteps[1:]
        ]
        keep_mask = np.broadcast_to(mask.latent_keep_mask(factor), (count, *clean.shape[1:3], 1))
        return {
            "keep_mask": np.ascontiguousarray(keep_mask),
            "kept": np.stack([*kept, clean]).astype(np.float32),
        }

    def _encode_image(self, pixels, noise):
        """Latents of images in the model's range (one image: once per image of the batch)."""
        return ops.convert_to_numpy(self.backbone.encode_images(pixels, noise))

    def _decode(self, latents):
        decoded = self.latent_decoder.predict_on_batch(np.asarray(latents, np.float32))
        return self.backbone.image_preprocessor.to_uint8(decoded)
