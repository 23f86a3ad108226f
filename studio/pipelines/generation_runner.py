"""Runs `GenerationSettings`: models with their LoRA files, embeddings, and infotext that names them."""

import copy
import dataclasses
import os
import warnings

from studio.files.a1111_name import a1111_name
from studio.images.concept_reference import ConceptReference
from studio.pipelines.text_to_image_pipeline import GeneratedImages, TextToImagePipeline


class GenerationRunner:
    """Makes images from `GenerationSettings`, keeping what it loaded for the next call.

    A model with a set of LoRA files and strengths is loaded once and its
    pipeline kept (a LoRA's strength is fixed in the compiled denoiser, so
    each strength is a model of its own); embeddings only change the text
    side, so each set reuses the model's pipeline. The images' parameters
    name every LoRA and embedding file with its strength and A1111's short
    hash (`ConceptReference`), so the infotext reproduces them.

    Args:
        weights: folder holding the named presets' weight files (offline use).
        vocabulary: a local CLIP vocabulary file (offline use).
        dtype: a dtype policy for the networks; None keeps Keras' global one.
        warn: called with each warning's text while loading embeddings
            (default: `warnings.warn`).
        max_models: how many loaded models (with their LoRA files) to keep.

    Example:

    ```python
    runner = GenerationRunner()
    settings = GenerationSettings("a photo of <cat-toy>", model="tiny",
                                  embeddings=("cat-toy.safetensors",), seed=1)
    result = runner.run(settings)
    save_png(result.images[0], "cat.png", result.parameters[0])
    ```
    """

    def __init__(self, weights=None, vocabulary=None, dtype=None, warn=None, max_models=2):
        self.weights = weights
        self.vocabulary = vocabulary
        self.dtype = dtype
        self.warn = warn
        self.max_models = max_models
        self._pipelines = {}
        self._hashes = {}

    def pipeline(self, settings):
        """The `TextToImagePipeline` of `settings`' model, LoRA files and embeddings."""
        key = (settings.model, settings.loras)
        base = self._pipelines.pop(key, None) or self._load(settings)
        self._pipelines[key] = base  # most recently used last
        while len(self._pipelines) > self.max_models:
            self._pipelines.pop(next(iter(self._pipelines)))
        if not settings.embeddings:
            return base
        from studio.embeddings import load_embedding
        from studio.embeddings.backbone_with_embeddings import backbone_with_embeddings

        embeddings = [load_embedding(path) for path in settings.embeddings]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # A1111's rule for files that do not name their token (SD-XL's):
            # the file's name.
            names = [a1111_name(path) for path in settings.embeddings]
            view = backbone_with_embeddings(base.backbone, embeddings, names=names)
        for warning in caught:
            (self.warn or warnings.warn)(str(warning.message))
        pipeline = copy.copy(base)
        pipeline.backbone = view
        return pipeline

    def run(self, settings, num_images_per_prompt=1, batch_size=None, callback=None,
            **pipeline_options):
        """Generates the images of `settings`.

        Args:
            settings: a `GenerationSettings`.
            num_images_per_prompt: images made for each prompt.
            batch_size: images per UNet batch (default: all at once).
            callback: called as `callback(step, total_steps)` after each step.
            **pipeline_options: further arguments of `TextToImagePipeline`
                (`init_image`, ...).

        Returns:
            A `GeneratedImages` whose parameters name the model as A1111
            does (a preset's name, a folder's name, a file's name without
            extension) and list the LoRA and embedding files.
        """
        pipeline = self.pipeline(settings)
        if pipeline_options.get("init_image") is not None:
            pipeline_options.setdefault("strength", settings.denoising_strength)
        result = pipeline(
            settings.prompt,
            negative_prompt=settings.negative_prompt,
            num_images_per_prompt=num_images_per_prompt,
            num_steps=settings.steps,
            guidance_scale=settings.guidance_scale,
            seed=settings.seed,
            height=settings.height,
            width=settings.width,
            sampler=settings.sampler,
            batch_size=batch_size,
            callback=callback,
            **pipeline_options,
        )
        loras = tuple(
            ConceptReference(a1111_name(path), self._short_hash(path, "lora"), strength)
            for path, strength in settings.loras
        )
        embeddings = tuple(
            ConceptReference(a1111_name(path), self._short_hash(path, "embedding"))
            for path in settings.embeddings
        )
        parameters = [
            dataclasses.replace(p, loras=loras, embeddings=embeddings) for p in result.parameters
        ]
        return GeneratedImages(result.images, parameters)

    def _load(self, settings):
        from studio.interop import load_backbone
        from studio.lora.lora_weights import LoRAWeights

        backbone = load_backbone(
            settings.model, weights=self.weights, vocabulary=self.vocabulary, dtype=self.dtype
        )
        for path, strength in settings.loras:
            LoRAWeights.load(path).apply(backbone, scale=strength)
        return TextToImagePipeline(backbone)

    def _short_hash(self, path, kind):
        from studio.interop.a1111_hashes import embedding_short_hash, lora_short_hash

        key = (os.path.abspath(path), os.path.getmtime(path), kind)
        if key not in self._hashes:
            self._hashes[key] = (lora_short_hash if kind == "lora" else embedding_short_hash)(path)
        return self._hashes[key]
