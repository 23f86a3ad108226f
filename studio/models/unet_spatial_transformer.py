"""The UNet's attention block: a transformer over a feature map's pixels."""

import keras
from keras import ops

from studio.models.numerics_arguments import (
    KERAS_CV_GELU_APPROXIMATE,
    KERAS_CV_GROUP_NORM_EPSILON,
    check_gelu_approximate,
    check_norm_epsilon,
)
from studio.models.unet_conv2d import UNetConv2D
from studio.models.unet_transformer_block import UNetTransformerBlock

# How the feature map is projected into and out of the transformer width.
PROJECTIONS = ("conv", "linear")


@keras.saving.register_keras_serializable(package="studio")
class UNetSpatialTransformer(keras.layers.Layer):
    """GroupNorm, projection in, transformer blocks, projection out, residual.

    The feature map `(batch, height, width, channels)` is normalised,
    projected, flattened to a sequence of `height * width` positions, passed
    through `depth` `UNetTransformerBlock`s that attend to each other and to
    the text context, reshaped back, projected and added to the input.

    Sublayers are created in the order of KerasCV's `SpatialTransformer`, so
    for `depth=1` the `weights` lists match in order and shapes.

    Args:
        num_heads: int. Attention heads.
        head_size: int. Size of each head; `num_heads * head_size` must equal
            the input's channels.
        projection: `"conv"` (1x1 convolutions, Stable Diffusion 1.x) or
            `"linear"` (dense layers, Stable Diffusion 2.x). The two compute
            the same function; their kernels have different shapes.
        depth: int. Number of transformer blocks.
        norm_groups: int. Groups of the GroupNorm.
        norm_epsilon: float. Epsilon of the GroupNorm: 1e-5 as in KerasCV,
            1e-6 as in diffusers' `Transformer2DModel`.
        gelu_approximate: bool. Whether the transformer blocks' GEGLU uses
            the tanh form of GELU (KerasCV) or the exact one (diffusers).
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: tensor of shape `(batch, height, width, channels)`.
        context: tensor of shape `(batch, context_length, context_dim)`.

    Returns:
        A tensor of the shape of `inputs`.

    Raises:
        ValueError: if `projection` is not one of `PROJECTIONS`, or
            `norm_epsilon` / `gelu_approximate` is not a positive number /
            a bool.
    """

    def __init__(
        self,
        num_heads,
        head_size,
        projection="conv",
        depth=1,
        norm_groups=32,
        norm_epsilon=KERAS_CV_GROUP_NORM_EPSILON,
        gelu_approximate=KERAS_CV_GELU_APPROXIMATE,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if projection not in PROJECTIONS:
            raise ValueError(
                f"`projection` must be one of {PROJECTIONS}. "
                f"Received: projection={projection!r}"
            )
        self.num_heads = num_heads
        self.head_size = head_size
        self.projection = projection
        self.depth = depth
        self.norm_groups = norm_groups
        self.norm_epsilon = check_norm_epsilon("norm_epsilon", norm_epsilon)
        self.gelu_approximate = check_gelu_approximate(gelu_approximate)
        width = num_heads * head_size
        self.norm = keras.layers.GroupNormalization(
            norm_groups, epsilon=self.norm_epsilon, dtype=self.dtype_policy
        )
        self.input_projection = self._make_projection(width)
        self.transformer_blocks = [
            UNetTransformerBlock(
                num_heads,
                head_size,
                gelu_approximate=gelu_approximate,
                dtype=self.dtype_policy,
            )
            for _ in range(depth)
        ]
        self.output_projection = self._make_projection(width)

    def _make_projection(self, units):
        if self.projection == "conv":
            return UNetConv2D(units, 1, dtype=self.dtype_policy)
        return keras.layers.Dense(units, dtype=self.dtype_policy)

    def build(self, inputs_shape, context_shape):
        self.norm.build(inputs_shape)
        self.input_projection.build(inputs_shape)
        sequence_shape = (inputs_shape[0], None, inputs_shape[-1])
        for block in self.transformer_blocks:
            block.build(sequence_shape, context_shape)
        self.output_projection.build(inputs_shape)

    def call(self, inputs, context):
        batch, height, width, channels = ops.shape(inputs)
        x = self.input_projection(self.norm(inputs))
        x = ops.reshape(x, (batch, height * width, channels))
        for block in self.transformer_blocks:
            x = block(x, context)
        x = ops.reshape(x, (batch, height, width, channels))
        return inputs + self.output_projection(x)

    def compute_output_shape(self, inputs_shape, context_shape):
        return tuple(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "head_size": self.head_size,
                "projection": self.projection,
                "depth": self.depth,
                "norm_groups": self.norm_groups,
                "norm_epsilon": self.norm_epsilon,
                "gelu_approximate": self.gelu_approximate,
            }
        )
        return config
