"""VAE decoder: Stable Diffusion latents back to images."""

import keras
from keras import ops

from studio.models.conv2d import Conv2D
from studio.models.vae_attention_block import VAEAttentionBlock
from studio.models.numerics_arguments import (
    KERAS_CV_GROUP_NORM_EPSILON,
    check_norm_epsilon,
)
from studio.models.vae_block_channels import check_vae_block_channels
from studio.models.vae_residual_block import VAEResidualBlock

IMAGE_CHANNELS = 3
UPSAMPLING_SIZE = 2


@keras.saving.register_keras_serializable(package="studio")
class VAEDecoder(keras.Model):
    """Decodes latents into images.

    Mirrors `VAEEncoder`: a middle section of residual, attention and
    residual blocks, then one resolution level per entry of
    `block_channels`, walked from the latent side (reversed). Each level has
    `layers_per_block + 1` residual blocks, as in SD's VAE; every level but
    the last ends in a 2x nearest-neighbour upsampling and a 3x3 conv, so
    images are `2 ** (len(block_channels) - 1)` times larger than the
    latents (8 for SD).

    The input is NOT scaled: callers divide latents by the latent scale
    (0.18215 for SD 1.x/2.x) first. At full size the weights line up one to
    one, in order, with KerasCV's `Decoder`, which divides its input by
    0.18215 itself: `decoder(z / 0.18215) == keras_cv_decoder(z)`.

    Args:
        block_channels: sequence of ints. Width of each resolution level,
            listed from the image side like `VAEEncoder`'s;
            `(128, 256, 512, 512)` in SD.
        layers_per_block: int. `VAEEncoder`'s residual blocks per level; the
            decoder uses one more per level. 2 in SD.
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
        latents: float tensor of shape `(batch, height, width,
            latent_channels)`.

    Returns:
        float32 tensor of shape `(batch, height * f, width * f, 3)`,
        `f = upsampling_factor`, roughly in `[-1, 1]` (not clipped).

    Raises:
        ValueError: for an empty `block_channels` or widths that
            `norm_groups` does not divide, or a `norm_epsilon` that is not
            a positive number.
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

        def conv(filters, kernel_size, name):
            return Conv2D(
                filters, kernel_size, padding="same", dtype=dtype, name=name
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
        latents = keras.Input(
            shape=(None, None, latent_channels), name="latents"
        )
        x = conv(latent_channels, 1, "latents_conv")(latents)
        x = conv(block_channels[-1], 3, "input_conv")(x)
        x = residual_block(block_channels[-1], "mid_residual_0")(x)
        x = VAEAttentionBlock(
            norm_groups=norm_groups,
            norm_epsilon=norm_epsilon,
            dtype=dtype,
            name="mid_attention",
        )(x)
        x = residual_block(block_channels[-1], "mid_residual_1")(x)
        last_level = len(block_channels) - 1
        for level, filters in enumerate(reversed(block_channels)):
            for index in range(layers_per_block + 1):
                x = residual_block(filters, f"up_{level}_residual_{index}")(x)
            if level < last_level:
                x = keras.layers.UpSampling2D(
                    UPSAMPLING_SIZE, dtype=dtype, name=f"up_{level}_upsample"
                )(x)
                x = conv(filters, 3, f"up_{level}_conv")(x)
        x = keras.layers.GroupNormalization(
            groups=norm_groups,
            epsilon=norm_epsilon,
            dtype=dtype,
            name="output_norm",
        )(x)
        x = keras.layers.Activation("silu", dtype=dtype, name="output_silu")(x)
        x = conv(IMAGE_CHANNELS, 3, "output_conv")(x)
        # Mixed-precision callers still get float32 images.
        images = ops.cast(x, "float32")
        super().__init__(inputs=latents, outputs=images, dtype=dtype, **kwargs)

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
    def upsampling_factor(self):
        """How many times larger the images are than the latents per side."""
        return UPSAMPLING_SIZE ** (len(self.block_channels) - 1)

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
