"""Textual inversion on SD3 / 3.5: one placeholder's rows in CLIP-L and CLIP-G, flow matching."""

from studio.models.presets import SD3
from studio.trainers.textual_inversion.sdxl_textual_inversion_trainer import (
    SDXLTextualInversionTrainer,
)


class SD3TextualInversionTrainer(SDXLTextualInversionTrainer):
    """Trains one placeholder's vectors in both CLIP encoders of an `SD3Backbone`.

    SD3's text conditioning is CLIP-L and CLIP-G (keras-hub's
    `CLIPTextEncoder`s; T5 is not in the presets), so textual inversion is
    SD-XL's: the placeholder gets its ids once, in `backbone.tokenizer`
    (whose ids go to both encoders), and each encoder gets its own rows
    (`PlaceholderEmbedding` on its own table), started from the initializer
    word's vectors in that table. Both train at once through the seam:
    `encode_text` with the lookup `{"clip_l": ..., "clip_g": ...}` gives
    the MMDiT its context and pooled projection (keras-hub's pooling at the
    end token is kept: placeholder ids come after it). The step's noise,
    timesteps, target and weights are the backbone's objective's
    (`FlowMatchingObjective`: velocity `noise - x0`, logit-normal
    timesteps unless `objective_options` say otherwise, as diffusers'
    `--weighting_scheme` and `--precondition_outputs`); CLIP-L/G, the MMDiT
    and the VAE are frozen.

    The result is one embedding in the `{"clip_l": (n, 768), "clip_g":
    (n, 1280)}` layout SD-XL's trainer writes (SD3's CLIP-L and CLIP-G are
    SD-XL's encoders), which ComfyUI's SD3 text encoders read by the same
    keys; its metadata records the family (`"studio.base_family": "sd3"`).

    Args:
        backbone: a `studio.models.sd3.SD3Backbone`.
        placeholder_tokens, initializer_words, num_vectors,
        norm_regularization, seed, objective_options, **kwargs: as
            `SDXLTextualInversionTrainer`'s. `min_snr_gamma` and
            `offset_noise` are DDPM options: flow matching refuses them.

    Example:

    ```python
    backbone = SD3Backbone.from_preset("tiny-sd3")
    trainer = SD3TextualInversionTrainer(backbone, "<cat-toy>", "toy")
    trainer.compile(optimizer=keras.optimizers.Adam(5e-3))
    trainer.fit(batches, steps_per_epoch=100)
    trainer.save_embedding("cat-toy.safetensors")
    ```
    """

    FAMILY_NAME = "SD3"
    # kohya-format copies of the file name SD3 in their ModelSpec metadata.
    BASE_FAMILY = SD3

    def _track_backbone(self, backbone):
        """Keeps the backbone and tracks the networks a step runs (all frozen).

        Tracked, they are the model's (non-trainable) variables, which
        JAX's stateless step passes in rather than baking into the trace.
        """
        self.backbone = backbone
        self.clip_l = backbone.clip_l
        self.clip_g = backbone.clip_g
        self.mmdit = backbone.mmdit
        self.vae_encoder = backbone.vae_encoder

    def _text_encoders(self, backbone):
        return backbone.text_encoders

    # keras-hub's functional MMDiT reports a float32 policy whatever its
    # layers' (float16 weights under a "float16" backbone), so the precision
    # is read from CLIP-L, which the gradients of the rows pass through.

    @property
    def precision(self):
        compute_dtype = self.clip_l.dtype_policy.compute_dtype
        return "float32" if compute_dtype == "float32" else f"mixed_{compute_dtype}"

    @property
    def weights_dtype(self):
        return self.clip_l.dtype_policy.variable_dtype
