"""VAE encoder: images to the moments of Stable Diffusion's latent space."""

import keras
from keras import ops

from studio.models.vae_attention_block import VAEAttentionBlock
from studio.models.numerics_arguments import (
    KERAS_CV_GROUP_NORM_EPSILON,
    check_norm_epsilon,
)
from studio.models.vae_block_channels import check_vae_block_channels
from studio.models.vae_residual_block import VAEResidualBlock

IMAGE_CHANNELS = 3
DOWNSAMPLING_STRIDE = 2


@keras.saving.register_keras_serializable(package="studio")
class VAEEncoder(keras.Model):
    """Encodes images into the mean and log-variance of their latents.

    Each entry of `block_channels` is one resolution level of
    `layers_per_block` residual blocks; every level but the last ends in a
    stride-2 convolution, so the latents are `2 ** (len(block_channels) - 1)`
    times smaller than the image (8 for SD). A middle section of residual,
    attention and residual blocks follows.

    The output is NOT scaled: callers multiply sampled latents by the
    latent scale (0.18215 for SD 1.x/2.x) themselves. At full size the
    weights line up one to one, in order, with KerasCV's `ImageEncoder`,
    whose output is `moments[..., :latent_channels] * 0.18215`.

    Args:
        block_channels: sequence of ints. Width of each resolution level,
            from the image side; `(128, 256, 512, 512)` in SD.
        layers_per_block: int. Residual blocks per level; 2 in SD.
        latent_channels: int. Channels of the latent space; 4 in SD.
        norm_groups: int. Groups of every group norm; must divide every
            entry of `block_channels`. 32 in SD.
        norm_epsilon: float. Epsilon of every group norm. The default, 1e-5,
            is KerasCV's (the presets compute with it); diffusers'
            `AutoencoderKL` and the original SD code use 1e-6, which the
            importers of diffusers folders and single files choose.
        dtype: str or `keras.DTypePolicy`. Dtype policy of every layer, e.g.
            `"float32"`, `"mixed_float16"`, `"mixed_bfloat16"`. The output is
            always float32.
        **kwargs: `name` and other `keras.Model` arguments.

    Call arguments:
        images: float tensor of shape `(batch, height, width, 3)` in
            `[-1, 1]`; height and width divisible by `downsampling_factor`.

    Returns:
        float32 tensor of shape `(batch, height / f, width / f,
        2 * latent_channels)`, `f = downsampling_factor`: the mean, then
        the log-variance, concatenated on the last axis.

    Raises:
        ValueError: at construction for an empty `block_channels` or widths
            that `norm_groups` does not divide, or a `norm_epsilon` that is
            not a positive number; at call for an image size
            that `downsampling_factor` does not divide.
    """

    def __init__(
        self,
        block_channels,
        layers_per_block,
        latent_channels=4,
        norm_groups=32,
        norm_epsilon=KERAS_CV_GROUP_NORM_EPSILON,
        dtype=None,
        **kwargs,
    ):
        block_channels = tuple(block_channels)
        check_vae_block_channels(block_channels, norm_groups)
        norm_epsilon = check_norm_epsilon("norm_epsilon", norm_epsilon)

        def conv(filters, kernel_size, name, strides=1, padding="same"):
            return keras.layers.Conv2D(
                filters,
                kernel_size,
                strides=strides,
                padding=padding,
                dtype=dtype,
                name=name,
            )

        def residual_block(filters, name):
            return VAEResidualBlock(
                filters,
                norm_groups=norm_groups,
                norm_epsilon=norm_epsilon,
                dtype=dtype,
                name=name,
            )

        # === Functional model ===
        images = keras.Input(
            shape=(None, None, IMAGE_CHANNELS), name="images"
        )
        x = conv(block_channels[0], 3, "input_conv")(images)
        last_level = len(block_channels) - 1
        for level, filters in enumerate(block_channels):
            for index in range(layers_per_block):
                x = residual_block(filters, f"down_{level}_residual_{index}")(x)
            if level < last_level:
                # Pad only bottom and right before the stride-2 conv, as the
                # original SD VAE does; "same" padding is not specified
                # identically on every backend.
                x = keras.layers.ZeroPadding2D(
                    ((0, 1), (0, 1)), dtype=dtype, name=f"down_{level}_pad"
                )(x)
                x = conv(
                    filters,
                    3,
                    f"down_{level}_downsample",
                    strides=DOWNSAMPLING_STRIDE,
                    padding="valid",
                )(x)
        x = residual_block(block_channels[-1], "mid_residual_0")(x)
        x = VAEAttentionBlock(
            norm_groups=norm_groups,
            norm_epsilon=norm_epsilon,
            dtype=dtype,
            name="mid_attention",
        )(x)
        x = residual_block(block_channels[-1], "mid_residual_1")(x)
        x = keras.layers.GroupNormalization(
            groups=norm_groups,
            epsilon=norm_epsilon,
            dtype=dtype,
            name="output_norm",
        )(x)
        x = keras.layers.Activation("silu", dtype=dtype, name="output_silu")(x)
        x = conv(2 * latent_channels, 3, "output_conv")(x)
        x = conv(2 * latent_channels, 1, "moments_conv")(x)
        # Mixed-precision callers still get float32 moments.
        moments = ops.cast(x, "float32")
        super().__init__(inputs=images, outputs=moments, dtype=dtype, **kwargs)

        # Functional.__init__ ignores `dtype`; keep the policy for
        # get_config, as keras-hub's Backbone does.
        if dtype is not None:
            self.dtype_policy = keras.dtype_policies.get(dtype)

        # === Config ===
        self.block_channels = block_channels
        self.layers_per_block = layers_per_block
        self.latent_channels = latent_channels
        self.norm_groups = norm_groups
        self.norm_epsilon = norm_epsilon

    @property
    def downsampling_factor(self):
        """How many times smaller the latents are than the image per side."""
        return DOWNSAMPLING_STRIDE ** (len(self.block_channels) - 1)

    def __call__(self, images, *args, **kwargs):
        # Checked here rather than in `call`, which Keras wraps in a message
        # that prints the whole input array.
        self._check_image_shape(images.shape)
        return super().__call__(images, *args, **kwargs)

    def _check_image_shape(self, shape):
        factor = self.downsampling_factor
        # A size unknown while tracing a graph (None) cannot be checked.
        if any(size is not None and size % factor != 0 for size in shape[1:3]):
            raise ValueError(
                f"Image height and width must be divisible by {factor} "
                f"(2 ** (len(block_channels) - 1)). Received: image "
                f"shape={tuple(shape)}"
            )

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": self.dtype_policy.name,
            "block_channels": list(self.block_channels),
            "layers_per_block": self.layers_per_block,
            "latent_channels": self.latent_channels,
            "norm_groups": self.norm_groups,
            "norm_epsilon": self.norm_epsilon,
        }
