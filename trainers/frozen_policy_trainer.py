"""A `keras.Model` trainer whose own policy is float32 around networks of any precision."""

import keras


class FrozenPolicyTrainer(keras.Model):
    """Base of the trainers: float32 itself, the backbone's networks in their own policy.

    A trainer keeps its inputs (VAE moments, latents) and loss in float32,
    so Keras, which looks at the trainer's policy, would not wrap the
    optimizer of a `mixed_float16` backbone for loss scaling by itself:
    `compile` does. Subclasses set `self.unet`.
    """

    @property
    def precision(self):
        """The networks' dtype policy name ("float32", "mixed_float16", ...)."""
        return self.unet.dtype_policy.name

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
