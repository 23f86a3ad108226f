"""A `keras.Model` trainer whose own policy is float32 around networks of any precision."""

import keras


class FrozenPolicyTrainer(keras.Model):
    """Base of the trainers: float32 itself, the backbone's networks in their own policy.

    A trainer keeps its inputs (VAE moments, latents) and loss in float32,
    so Keras, which looks at the trainer's policy, would not wrap the
    optimizer of a `mixed_float16` backbone for loss scaling by itself:
    `compile` does. Subclasses set `self.unet` and `self.backbone`.
    """

    # Sampling steps of `sample_images` when the caller gives none.
    SAMPLE_STEPS = 25
    # `sample_images` builds its pipeline on first use.
    _sampling_pipeline = None

    @property
    def precision(self):
        """How the networks compute: "float32", "mixed_float16" or "mixed_bfloat16".

        Networks stored in half precision (policy "float16" or "bfloat16",
        for frozen ones) compute as the mixed policy of that dtype does;
        `weights_dtype` tells them apart.
        """
        compute_dtype = self.unet.dtype_policy.compute_dtype
        return "float32" if compute_dtype == "float32" else f"mixed_{compute_dtype}"

    @property
    def weights_dtype(self):
        """The dtype the networks store their weights in ("float32" under a mixed policy)."""
        return self.unet.dtype_policy.variable_dtype

    @property
    def uses_loss_scaling(self):
        """True under `mixed_float16`, whose gradients underflow unscaled."""
        return self.precision == "mixed_float16"

    def compile(self, optimizer="adam", **kwargs):
        """`keras.Model.compile`, wrapping the optimizer for loss scaling when needed."""
        optimizer = keras.optimizers.get(optimizer)
        if self.uses_loss_scaling and not isinstance(
            optimizer, keras.optimizers.LossScaleOptimizer
        ):
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        super().compile(optimizer=optimizer, **kwargs)

    def sample_images(self, prompts, seed=0, num_steps=None, guidance_scale=7.5, sampler="ddim"):
        """Generates images with the weights as trained so far, e.g. progress samples.

        The generation pipeline is built once (on `_sampling_backbone()`)
        and reused.

        Args:
            prompts: list of prompts, one image each.
            seed: the first image's seed; image `i` uses `seed + i`.
            num_steps: sampling steps (default: the trainer's `SAMPLE_STEPS`).
            guidance_scale: classifier-free guidance scale.
            sampler: a scheduler name of `studio.schedulers`.

        Returns:
            A `studio.pipelines.GeneratedImages`.
        """
        if self._sampling_pipeline is None:
            from studio.pipelines import TextToImagePipeline

            self._sampling_pipeline = TextToImagePipeline(self._sampling_backbone())
        return self._sampling_pipeline(
            list(prompts),
            num_steps=self.SAMPLE_STEPS if num_steps is None else num_steps,
            guidance_scale=guidance_scale,
            seed=seed,
            sampler=sampler,
        )

    def _sampling_backbone(self):
        """The backbone `sample_images` generates with: the trained one itself."""
        return self.backbone
