"""LoRA on keras-hub's SD3 MMDiT with the flow-matching objective (the start of SD3 DreamBooth)."""

import keras
from keras import ops

from studio.lora.sd3_lora_targets import mmdit_lora_targets
from studio.trainers.diffusion_trainer import DiffusionTrainer

# A batch may hold the frozen text encoders' output (cached text embeddings,
# `SD3Backbone.encode_text`) instead of token ids.
CONDITIONING_KEYS = ("context", "pooled_projection")


class SD3LoRATrainer(DiffusionTrainer):
    """Trains LoRA matrices on an `SD3Backbone`'s MMDiT; everything else stays frozen.

    Keras' own `Dense.enable_lora` adapts the targets (keras-hub's MMDiT uses
    plain `keras.layers.Dense`, as the studio's UNet does, so the studio's
    LoRA mechanism applies unchanged); `mmdit_lora_targets` names them by
    SD3 module. Each step draws latents' noise and timesteps from the
    backbone's `FlowMatchingObjective` and regresses the MMDiT's velocity
    under the caption's CLIP-L/G conditioning. No prior preservation,
    cached embeddings or LoRA files yet.

    Args:
        backbone: a `studio.models.sd3.SD3Backbone`.
        lora_rank: int >= 1.
        lora_alpha: float or None (= rank); LoRA outputs scale by alpha / rank.
        lora_mlp: also adapt the MLPs, besides attention qkv / proj.
        seed: int or None, of the noise and timestep draws and LoRA init.
        **objective_options: `FlowMatchingObjective` options
            (`weighting_scheme`, `precondition_outputs`, ...).

    Call arguments:
        inputs: dict with `"token_ids"` (or the cached `"context"` and
            `"pooled_projection"`) and `"latents"` (or `"moments"` / `"images"`).

    Returns:
        `(prediction, target, weights)`.
    """

    def __init__(self, backbone, lora_rank=4, lora_alpha=None, lora_mlp=False, seed=None,
                 **objective_options):  # fmt: skip
        super().__init__()
        if isinstance(lora_rank, bool) or not isinstance(lora_rank, int) or lora_rank < 1:
            raise ValueError(f"`lora_rank` must be an integer >= 1. Received: lora_rank={lora_rank!r}")
        self.backbone = backbone
        self.lora_rank = lora_rank
        self.lora_alpha = float(lora_rank if lora_alpha is None else lora_alpha)
        self.seed = seed
        for network in (backbone.clip_l, backbone.clip_g, backbone.vae):
            network.trainable = False
        self.mmdit = backbone.mmdit
        self.lora_targets = self._enable_lora(mmdit_lora_targets(self.mmdit, lora_mlp))
        self._start_training_state(seed, **objective_options)

    def _enable_lora(self, targets):
        base_seed = 0 if self.seed is None else self.seed
        for index, layer in enumerate(targets.values()):
            layer.enable_lora(
                self.lora_rank,
                lora_alpha=self.lora_alpha,
                a_initializer=keras.initializers.HeUniform(seed=base_seed * 100_003 + index),
                b_initializer="zeros",
            )
        lora_variables = {
            id(variable)
            for layer in targets.values()
            for variable in (layer.lora_kernel_a, layer.lora_kernel_b)
        }
        self.mmdit.trainable = True
        for variable in self.mmdit.weights:
            variable.trainable = id(variable) in lora_variables
        return targets

    @property
    def precision(self):
        compute_dtype = self.mmdit.dtype_policy.compute_dtype
        return "float32" if compute_dtype == "float32" else f"mixed_{compute_dtype}"

    @property
    def weights_dtype(self):
        return self.mmdit.dtype_policy.variable_dtype

    def call(self, inputs, training=False):
        latents = self._clean_latents(inputs)
        noisy, timesteps, target, weights = self.objective.noisy_latents(
            latents, self.seed_generator
        )
        if CONDITIONING_KEYS[0] in inputs:
            conditioning = {key: inputs[key] for key in CONDITIONING_KEYS}
        else:
            conditioning = self.backbone.encode_text(inputs["token_ids"])
        prediction = self.backbone.denoise(noisy, timesteps, conditioning, training=training)
        return ops.cast(prediction, "float32"), target, weights

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        prediction, target, weights = y_pred
        loss = self.objective.loss(prediction, target, weights)
        self.step_loss.update_state(loss)
        return loss

    def get_config(self):
        return {"name": self.name, "lora_rank": self.lora_rank,
                "lora_alpha": self.lora_alpha, "seed": self.seed}  # fmt: skip
