"""DreamBooth LoRA on keras-hub's SD3 MMDiT with the flow-matching objective."""

import functools
import os

import keras
from keras import ops

from studio.errors import InvalidInputError
from studio.lora.sd3_clip_lora_targets import sd3_clip_lora_targets
from studio.lora.sd3_diffusers_lora import save_diffusers_sd3_lora
from studio.lora.sd3_lora_targets import mmdit_lora_targets
from studio.trainers.diffusion_trainer import DiffusionTrainer
from studio.trainers.distributed.replica_context import sum_over_replicas
from studio.trainers.dreambooth.dreambooth_trainer import (
    DreamBoothTrainer,
    dreambooth_lora_weights,
)
from studio.trainers.run.last_value import LastValue
from studio.trainers.run.run_directory import LORA_FILE

# The same LoRA in diffusers' names (split q / k / v), beside the kohya file.
DIFFUSERS_LORA_FILE = "lora.diffusers.safetensors"
# kohya's `ss_base_model_version` of SD3 LoRAs.
KOHYA_SD3_BASE_MODEL_VERSION = "sd3"

# A batch may hold the frozen text encoders' output (cached text embeddings,
# `SD3Backbone.encode_text`) instead of token ids.
CONDITIONING_KEYS = ("context", "pooled_projection")
# Set on a rematerialised joint block so that a second call does not wrap it twice.
_REMAT_MARK = "_studio_rematerialized"
# The text encoders (`SD3Backbone` attributes) LoRA adapts with `train_text_encoder`.
_TEXT_ENCODERS = ("clip_l", "clip_g")
# LoRA initial values: each network's seeds start this far apart.
_NETWORK_SEED_STRIDE = 1_000


class SD3LoRATrainer(DiffusionTrainer):
    """Trains LoRA matrices on an `SD3Backbone`'s MMDiT; everything else stays frozen.

    Keras' own `Dense.enable_lora` adapts the targets (keras-hub's MMDiT uses
    plain `keras.layers.Dense`, as the studio's UNet does, so the studio's
    LoRA mechanism applies unchanged); `mmdit_lora_targets` names them by
    SD3 module. With `train_text_encoder`, CLIP-L and CLIP-G get LoRA too
    (`sd3_clip_lora_targets`: attention, and the MLPs with `lora_mlp`), so
    the identifier's conditioning itself can move, and each step encodes
    its prompts (cached text embeddings cannot train them). Each step
    draws latents' noise and timesteps from the backbone's
    `FlowMatchingObjective` and regresses the MMDiT's velocity
    under the caption's CLIP-L/G conditioning. With prior preservation a
    batch also holds class images (`is_class_image`), whose loss is
    weighted by `prior_loss_weight`, as `DreamBoothTrainer`'s. Results:
    `lora.safetensors` (kohya's SD3 names) and `lora.diffusers.safetensors`.
    Under mixed precision `studio train dreambooth` stores the backbone in
    half precision (`load_dreambooth_backbone`); the LoRA matrices are
    float32 whatever the backbone's policy (`enable_lora` makes them so).

    Args:
        backbone: a `studio.models.sd3.SD3Backbone`.
        prior_loss_weight: float >= 0, the class images' loss weight.
        lora_rank: int >= 1.
        lora_alpha: float or None (= rank); LoRA outputs scale by alpha / rank.
        lora_mlp: also adapt the MLPs, besides attention qkv / proj.
        train_text_encoder: also LoRA on CLIP-L and CLIP-G (kohya's
            `lora_te1_` / `lora_te2_` modules).
        seed: int or None, of the noise and timestep draws and LoRA init.
        remat: gradient checkpointing: the MMDiT's joint blocks recompute
            their activations in the backward pass (see
            `rematerialize_mmdit_blocks`): less memory, more compute.
        **objective_options: `FlowMatchingObjective` options
            (`weighting_scheme`, `precondition_outputs`, ...).

    Call arguments:
        inputs: dict with `"token_ids"` (or the cached `"context"` and
            `"pooled_projection"`), `"latents"` (or `"moments"` / `"images"`)
            and optionally `"is_class_image"`.

    Returns:
        `(prediction, target, weights, is_class_image)`.
    """

    def __init__(self, backbone, lora_rank=4, lora_alpha=None, lora_mlp=False, seed=None,
                 prior_loss_weight=1.0, remat=False, train_text_encoder=False,
                 **objective_options):  # fmt: skip
        super().__init__()
        if isinstance(lora_rank, bool) or not isinstance(lora_rank, int) or lora_rank < 1:
            raise InvalidInputError(
                f"`lora_rank` must be an integer >= 1. Received: lora_rank={lora_rank!r}"
            )
        if not prior_loss_weight >= 0:
            raise InvalidInputError(
                "`prior_loss_weight` must be >= 0 (1.0 is usual; 0 ignores class images). "
                f"Received: prior_loss_weight={prior_loss_weight!r}"
            )
        self.backbone = backbone
        self.prior_loss_weight = float(prior_loss_weight)
        self.lora_rank = lora_rank
        self.lora_alpha = float(lora_rank if lora_alpha is None else lora_alpha)
        self.seed = seed
        self.train_text_encoder = bool(train_text_encoder)
        for network in (backbone.clip_l, backbone.clip_g, backbone.vae):
            network.trainable = False
        self.mmdit = backbone.mmdit
        self.lora_targets = self._enable_lora(
            self.mmdit, mmdit_lora_targets(self.mmdit, lora_mlp), offset=0
        )
        if self.train_text_encoder:
            for offset, encoder in enumerate(_TEXT_ENCODERS, start=1):
                network = getattr(backbone, encoder)
                self._enable_lora(network, sd3_clip_lora_targets(network, lora_mlp), offset)
                # Tracked by the trainer, so their LoRA is among its variables.
                setattr(self, encoder, network)
        self.remat = bool(remat)
        if self.remat:
            rematerialize_mmdit_blocks(self.mmdit)
        self._start_training_state(seed, **objective_options)
        self.instance_loss = LastValue(name="instance_loss")
        self.prior_loss = LastValue(name="prior_loss")

    def _enable_lora(self, network, targets, offset):
        """LoRA on `targets` (layers of `network`), every other weight of `network` frozen."""
        base_seed = 0 if self.seed is None else self.seed
        for index, layer in enumerate(targets.values()):
            # One seed per layer: a seeded initializer draws the same values every call.
            seed = base_seed * 100_003 + offset * _NETWORK_SEED_STRIDE + index
            layer.enable_lora(
                self.lora_rank,
                lora_alpha=self.lora_alpha,
                a_initializer=keras.initializers.HeUniform(seed=seed),
                b_initializer="zeros",
            )
        lora_variables = {
            id(variable)
            for layer in targets.values()
            for variable in (layer.lora_kernel_a, layer.lora_kernel_b)
        }
        network.trainable = True
        for variable in network.weights:
            variable.trainable = id(variable) in lora_variables
        return targets

    # keras-hub's functional MMDiT reports the "float32" policy whatever its
    # layers were built with, so the precision is read off an adapted layer:
    # a mixed_float16 run read as float32 trained without loss scaling.
    @property
    def precision(self):
        compute_dtype = self._adapted_layer_policy().compute_dtype
        return "float32" if compute_dtype == "float32" else f"mixed_{compute_dtype}"

    @property
    def weights_dtype(self):
        return self._adapted_layer_policy().variable_dtype

    def _adapted_layer_policy(self):
        return next(iter(self.lora_targets.values())).dtype_policy

    def call(self, inputs, training=False):
        latents = self._clean_latents(inputs)
        noisy, timesteps, target, weights = self.objective.noisy_latents(
            latents, self.seed_generator
        )
        conditioning = self._conditioning(inputs, training)
        prediction = self.backbone.denoise(noisy, timesteps, conditioning, training=training)
        if "is_class_image" in inputs:
            is_class = ops.cast(inputs["is_class_image"], "float32")
        else:
            is_class = ops.zeros(ops.shape(weights), "float32")
        return ops.cast(prediction, "float32"), target, weights, is_class

    def _conditioning(self, inputs, training):
        """The MMDiT's `{"context", "pooled_projection"}`: the batch's cached ones, or encoded."""
        if CONDITIONING_KEYS[0] in inputs:
            if self.train_text_encoder:
                raise ValueError(
                    "Cached 'context' cannot train CLIP-L/G: give 'token_ids'. "
                    f"Received: a batch with {sorted(inputs)}"
                )
            return {key: inputs[key] for key in CONDITIONING_KEYS}
        return self.backbone.encode_text(
            inputs["token_ids"], training=self.train_text_encoder and training
        )

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        prediction, target, weights, is_class = y_pred
        instance_loss, prior_loss = self.split_losses(prediction, target, weights, is_class)
        loss = instance_loss + self.prior_loss_weight * prior_loss
        self.step_loss.update_state(sum_over_replicas(loss))
        self.instance_loss.update_state(sum_over_replicas(instance_loss))
        self.prior_loss.update_state(sum_over_replicas(prior_loss))
        return loss

    # DreamBooth's split of a batch into its instance and class halves.
    split_losses = DreamBoothTrainer.split_losses

    # --- Results ----------------------------------------------------------

    is_lora = True

    def lora_weights(self, steps=None):
        """The trained LoRA matrices as a `LoRAWeights` (kohya's SD3 names)."""
        return dreambooth_lora_weights(self.backbone, KOHYA_SD3_BASE_MODEL_VERSION, steps)

    def save_results(self, folder, step):
        """Writes `lora.safetensors` (kohya) and `lora.diffusers.safetensors` into `folder`."""
        weights = self.lora_weights(step)
        return [
            weights.save(os.path.join(folder, LORA_FILE)),
            save_diffusers_sd3_lora(weights, os.path.join(folder, DIFFUSERS_LORA_FILE)),
        ]

    def log_scalars(self):
        """TensorBoard scalars beside the loss: the two halves' losses (for `TrainingRun`)."""
        return {
            "loss/instance": float(ops.convert_to_numpy(self.instance_loss.result())),
            "loss/prior": float(ops.convert_to_numpy(self.prior_loss.result())),
        }

    def get_config(self):
        return {"name": self.name, "lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha,
                "prior_loss_weight": self.prior_loss_weight, "seed": self.seed,
                "remat": self.remat, "train_text_encoder": self.train_text_encoder}  # fmt: skip


def rematerialize_mmdit_blocks(mmdit):
    """Makes each joint block of keras-hub's MMDiT recompute its activations in the backward pass.

    SD3's gradient checkpointing (diffusers' `enable_gradient_checkpointing`
    checkpoints the same transformer blocks): a training step keeps each
    block's inputs and recomputes the inside of a block when its gradient
    is needed (`keras.remat`: `jax.checkpoint` under JAX). As
    `rematerialize_unet_blocks` does for the UNet, the blocks exist
    already, so each one's `call` is wrapped; outputs are unchanged.

    Args:
        mmdit: keras-hub's `MMDiT` (`SD3Backbone.mmdit`).

    Returns:
        The joint blocks' names (already wrapped ones included, so a second
        call changes nothing).
    """
    for block in mmdit.joint_blocks:
        if not getattr(block, _REMAT_MARK, False):
            # An instance attribute shadows the class's `call`.
            block.call = _rematerialized(block.call)
            object.__setattr__(block, _REMAT_MARK, True)
    return [block.name for block in mmdit.joint_blocks]


def _rematerialized(call):
    """`call`, recomputed in the backward pass and traced anew at every call.

    A new `partial` per call is a new function for `jax.checkpoint`'s
    trace cache (see `dreambooth_remat._rematerialized`); keyword arguments
    (`training`) are bound in it, so they stay Python values, not traced
    arrays.
    """

    @functools.wraps(call)
    def rematerialized_call(*args, **kwargs):
        return keras.remat(functools.partial(call, **kwargs))(*args)

    return rematerialized_call
