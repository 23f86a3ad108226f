"""The base of the diffusion trainers: batch handling, random state, precision, samples."""

import keras
from keras import ops

from studio.trainers.objectives import objective_for
from studio.trainers.run.last_value import LastValue

# Batch keys a step accepts for the images, cheapest first.
IMAGE_INPUT_KEYS = ("latents", "moments", "images")


class DiffusionTrainer(keras.Model):
    """Base of the trainers of a backbone's denoiser: what every method shares.

    A subclass (textual inversion, DreamBooth, the base model; next the
    SDXL and SD3 ones) decides what trains and how the loss is split; this
    class owns the rest:

    - the backbone's networks as tracked attributes (`_track_backbone`),
      in the order checkpoints expect;
    - the objective the backbone was trained with, its `seed_generator`
      (whose state is a variable, so checkpoints save the random state)
      and the `step_loss` metric (`_start_training_state`);
    - clean latents from a batch's `"latents"`, `"moments"` or `"images"`
      (`_clean_latents`, through the backbone's `sample_latents` /
      `encode_images` seam);
    - the precision: the trainer itself is float32 (its inputs, the VAE
      moments and latents, and the loss stay float32), the networks keep
      their own policy, so Keras, which looks at the trainer's policy,
      would not wrap the optimizer of a `mixed_float16` backbone for loss
      scaling by itself: `compile` does;
    - `sample_images`, progress samples with the weights as trained so far.

    Subclasses call `super().__init__(**kwargs)` (float32 by default),
    `_track_backbone(backbone)` before creating their own variables and
    `_start_training_state(...)` after them: checkpoints restore variables
    by order and shape, and that order is the one of the first trainers.
    """

    # Sampling steps of `sample_images` when the caller gives none.
    SAMPLE_STEPS = 25
    IMAGE_INPUT_KEYS = IMAGE_INPUT_KEYS
    # `sample_images` builds its pipeline on first use.
    _sampling_pipeline = None

    def __init__(self, **kwargs):
        # float32: the trainer's own inputs (moments, latents) must not be
        # cast to float16; the networks keep their own policies.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def _track_backbone(self, backbone):
        """Keeps the backbone, and its trained networks as attributes Keras tracks.

        The attribute order (text encoder, UNet, VAE encoder, then SDXL's
        second text encoder) is the order of the trainable variables that
        checkpoints save.
        """
        self.backbone = backbone
        self.text_encoder = backbone.text_encoder
        self.unet = backbone.unet
        self.vae_encoder = backbone.vae_encoder
        # SDXL's second text encoder, after the networks SD checkpoints hold.
        if getattr(backbone, "text_encoder_2", None) is not None:
            self.text_encoder_2 = backbone.text_encoder_2

    def _start_training_state(self, seed, seed_name="noise_seed", **objective_options):
        """Creates the objective, the seed generator and the step-loss metric, in that order."""
        self.objective = objective_for(self.backbone, **objective_options)
        self.seed_generator = keras.random.SeedGenerator(seed, name=seed_name)
        self.step_loss = LastValue(name="step_loss")

    # --- Batches ----------------------------------------------------------

    def _clean_latents(self, inputs, requirement=""):
        """The batch's clean, scaled latents: given, sampled from moments, or encoded.

        Args:
            inputs: a batch dict with one of `IMAGE_INPUT_KEYS`.
            requirement: words the error adds after the keys (what else
                the batch must hold).

        Raises:
            ValueError: the batch holds none of the keys.
        """
        if "latents" in inputs:
            return ops.cast(inputs["latents"], "float32")
        noise = self.objective.latent_noise(self.seed_generator)
        if "moments" in inputs:
            return self.backbone.sample_latents(inputs["moments"], noise)
        if "images" in inputs:
            return self.backbone.encode_images(inputs["images"], noise, training=False)
        raise ValueError(
            f"A batch must hold one of {IMAGE_INPUT_KEYS}{requirement}. "
            f"Received: {describe_batch(inputs)}"
        )

    def _sized_conditioning(self, conditioning, latents):
        """`conditioning` with the size ids of the latents' images, for families that have them.

        SDXL's UNet is conditioned on six size ids (`time_ids`); its
        backbone's `encode_text` gives those of its `image_size`, a cached
        conditioning none. Training images are uncropped squares of the
        run's resolution, so each example gets `(r, r, 0, 0, r, r)`, as
        diffusers' SDXL scripts give an uncropped image. Other families'
        conditioning is returned as it is.
        """
        time_ids = getattr(self.backbone, "time_ids", None)
        if time_ids is None or not isinstance(conditioning, dict):
            return conditioning
        factor = self.backbone.latent_downsampling
        height, width = latents.shape[1] * factor, latents.shape[2] * factor
        ids = ops.convert_to_tensor(time_ids(height, width), "float32")
        batch = ops.shape(latents)[0]
        return dict(conditioning, time_ids=ops.tile(ids[None, :], (batch, 1)))

    # --- Precision --------------------------------------------------------

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

    # --- Samples ----------------------------------------------------------

    def sample_images(self, prompts, seed=0, num_steps=None, guidance_scale=7.5, sampler="ddim"):
        """Generates images with the weights as trained so far, e.g. progress samples.

        The generation pipeline is built once (on `sampling_backbone()`)
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

            self._sampling_pipeline = TextToImagePipeline(self.sampling_backbone())
        return self._sampling_pipeline(
            list(prompts),
            num_steps=self.SAMPLE_STEPS if num_steps is None else num_steps,
            guidance_scale=guidance_scale,
            seed=seed,
            sampler=sampler,
        )

    def sampling_backbone(self):
        """The backbone (or view) that generates with the weights as trained: the backbone itself."""
        return self.backbone


def describe_batch(inputs):
    """A batch's kind and keys, for error messages."""
    if isinstance(inputs, dict):
        return f"a dict with keys {sorted(inputs)}"
    return type(inputs).__name__
