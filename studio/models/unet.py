"""Stable Diffusion's conditional UNet, the denoiser of the latent diffusion."""

import keras
from keras import ops

from studio.models.numerics_arguments import (
    KERAS_CV_GELU_APPROXIMATE,
    KERAS_CV_GROUP_NORM_EPSILON,
    check_gelu_approximate,
    check_norm_epsilon,
)
from studio.models.unet_added_conditioning import UNetAddedConditioning
from studio.models.unet_downsample import UNetDownsample
from studio.models.unet_resnet_block import UNetResnetBlock
from studio.models.unet_spatial_transformer import (
    PROJECTIONS,
    UNetSpatialTransformer,
)
from studio.models.unet_timestep_embedding import UNetTimestepEmbedding
from studio.models.unet_upsample import UNetUpsample

# Width of the timestep embedding after its two dense layers, in multiples of
# the first level's channels (320 -> 1280 in Stable Diffusion).
TIME_EMBEDDING_MULTIPLIER = 4
# SDXL's micro-conditioning: sinusoidal features per id, and ids per sample
# (original size, crop top-left, target size).
SDXL_TIME_IDS_DIM = 256
SDXL_NUM_TIME_IDS = 6


@keras.saving.register_keras_serializable(package="studio")
class UNet(keras.Model):
    """Stable Diffusion's UNet: predicts noise (or v) from noisy latents.

    A functional model. Its levels each hold `layers_per_block` residual
    blocks (each followed by a spatial transformer on levels with attention)
    and, except the last, a downsampling step; a middle block (residual,
    transformer, residual) joins them to the mirrored upsampling path, which
    has one more block per level and takes the skip connections. Every
    residual block gets the timestep embedding; every transformer
    cross-attends to the text `context`.

    The sinusoidal timestep embedding is computed inside the model from the
    raw timesteps (KerasCV's `DiffusionModel` takes the embedding as input;
    the formula is the same). Every residual and transformer block is its own
    layer, so that rematerialisation can wrap them one by one.

    With the Stable Diffusion sizes, the `weights` list equals, in order and
    shapes, that of KerasCV's `DiffusionModel` (SD 1.x: `num_heads=8`,
    `context_dim=768`, `transformer_projection="conv"`) or
    `DiffusionModelV2` (SD 2.x: `head_size=64`, `context_dim=1024`,
    `transformer_projection="linear"`), so their weights load by position.

    Args:
        block_channels: sequence of ints, channels of each level, e.g.
            `(320, 640, 1280, 1280)`. The first one is also the width of the
            sinusoidal timestep embedding.
        layers_per_block: int. Residual blocks per level on the way down (the
            way up has one more).
        attention_levels: sequence of bools, one per level: whether the
            level's residual blocks are followed by spatial transformers.
        context_dim: int. Features of each context (text encoder) token.
        num_heads: int. Attention heads on every level (SD 1.x); the head
            size is the level's channels divided by it. Give this or
            `head_size`, not both.
        head_size: int. Size of each attention head on every level (SD 2.x);
            the number of heads is the level's channels divided by it.
        transformer_projection: `"conv"` (SD 1.x) or `"linear"` (SD 2.x):
            how spatial transformers project in and out.
        transformer_depth: int, or a sequence of ints, one per level (SDXL:
            `(1, 2, 10)`): transformer blocks per spatial transformer. The
            middle block takes the deepest level's.
        norm_groups: int. Groups of every GroupNorm.
        latent_channels: int. Channels of the latents in and of the output.
        input_channels: int or None. Channels of the `"latents"` input when
            it carries more than the latents: 9 for an inpainting UNet
            (latents, mask, masked-image latents, as SD's inpainting
            checkpoints). None (the default): `latent_channels`.
        resnet_norm_epsilon: float. Epsilon of the residual blocks'
            GroupNorms and of the output GroupNorm; 1e-5 in KerasCV and in
            diffusers (`UNet2DConditionModel`'s `norm_eps`).
        transformer_norm_epsilon: float. Epsilon of the spatial
            transformers' GroupNorms. The default, 1e-5, is KerasCV's (the
            presets compute with it); diffusers' `Transformer2DModel` and
            the original SD code use 1e-6, which the importers choose.
        gelu_approximate: bool. Whether the transformers' GEGLU uses the
            tanh approximation of GELU (True, KerasCV's, the default) or the
            exact erf form (False, diffusers' and the original SD code's).
        pooled_text_dim: None (SD 1.x / 2.x), or the width of a pooled text
            vector that, with `num_time_ids` micro-conditioning ids, is
            embedded (`UNetAddedConditioning`) and added to the time
            embedding (SDXL: 1280, diffusers' `addition_embed_type=
            "text_time"`). The model then also takes `"text_embeds"` and
            `"time_ids"`.
        time_ids_dim: int. Sinusoidal features per id (SDXL: 256).
        num_time_ids: int. Micro-conditioning ids per sample (SDXL base: 6).
        dtype: dtype policy of every layer, e.g. `"float32"`,
            `"mixed_float16"`, `"mixed_bfloat16"`. The output is float32.
        **kwargs: standard `keras.Model` arguments (`name`, `trainable`).

    Call arguments:
        inputs: dict with `"latents"`, shape `(batch, height, width,
            input_channels)`, height and width divisible by
            `2 ** (len(block_channels) - 1)`; `"timesteps"`, int or float,
            shape `(batch,)`; `"context"`, shape `(batch, context_length,
            context_dim)`; with `pooled_text_dim`, also `"text_embeds"`,
            shape `(batch, pooled_text_dim)`, and `"time_ids"`, shape
            `(batch, num_time_ids)`.

    Returns:
        A float32 tensor of the shape of `inputs["latents"]`.

    Raises:
        ValueError: on inconsistent sizes (see the messages), an epsilon
            that is not a positive number, a `gelu_approximate` that is not
            a bool, and when called
            with latents whose height or width is not divisible by
            `2 ** (len(block_channels) - 1)`.

    Example:

    ```python
    unet = UNet(
        block_channels=(32, 64), layers_per_block=1,
        attention_levels=(True, True), context_dim=32, num_heads=2,
        norm_groups=8,
    )
    noise = unet({
        "latents": np.zeros((1, 8, 8, 4)),
        "timesteps": np.array([999]),
        "context": np.zeros((1, 77, 32)),
    })
    ```
    """

    def __init__(
        self,
        block_channels,
        layers_per_block,
        attention_levels,
        context_dim,
        num_heads=None,
        head_size=None,
        transformer_projection="conv",
        transformer_depth=1,
        norm_groups=32,
        latent_channels=4,
        input_channels=None,
        resnet_norm_epsilon=KERAS_CV_GROUP_NORM_EPSILON,
        transformer_norm_epsilon=KERAS_CV_GROUP_NORM_EPSILON,
        gelu_approximate=KERAS_CV_GELU_APPROXIMATE,
        pooled_text_dim=None,
        time_ids_dim=SDXL_TIME_IDS_DIM,
        num_time_ids=SDXL_NUM_TIME_IDS,
        dtype=None,
        **kwargs,
    ):
        block_channels = tuple(int(c) for c in block_channels)
        attention_levels = tuple(bool(a) for a in attention_levels)
        _check_sizes(
            block_channels,
            attention_levels,
            transformer_projection,
            norm_groups,
        )
        depth_per_level = _depth_per_level(transformer_depth, block_channels)
        if isinstance(transformer_depth, (list, tuple)):
            transformer_depth = list(depth_per_level)
        heads_per_level = _heads_per_level(block_channels, num_heads, head_size)
        resnet_norm_epsilon = check_norm_epsilon(
            "resnet_norm_epsilon", resnet_norm_epsilon
        )
        transformer_norm_epsilon = check_norm_epsilon(
            "transformer_norm_epsilon", transformer_norm_epsilon
        )
        gelu_approximate = check_gelu_approximate(gelu_approximate)
        dtype = keras.dtype_policies.get(dtype)
        num_levels = len(block_channels)

        def resnet_block(filters, name):
            return UNetResnetBlock(
                filters,
                norm_groups=norm_groups,
                norm_epsilon=resnet_norm_epsilon,
                dtype=dtype,
                name=name,
            )

        def spatial_transformer(level, name):
            heads, size = heads_per_level[level]
            return UNetSpatialTransformer(
                heads,
                size,
                projection=transformer_projection,
                depth=depth_per_level[level],
                norm_groups=norm_groups,
                norm_epsilon=transformer_norm_epsilon,
                gelu_approximate=gelu_approximate,
                dtype=dtype,
                name=name,
            )

        # === Functional model ===
        # The graph (which layer feeds which, and in which argument order)
        # mirrors KerasCV's DiffusionModel, because Keras orders a functional
        # model's layers, hence its `weights`, by their place in the graph.
        latents = keras.Input(
            (None, None, input_channels or latent_channels), name="latents"
        )
        timesteps = keras.Input((), name="timesteps")
        context = keras.Input((None, context_dim), name="context")
        inputs = {"latents": latents, "timesteps": timesteps, "context": context}

        time_width = TIME_EMBEDDING_MULTIPLIER * block_channels[0]
        embedding = UNetTimestepEmbedding(
            block_channels[0], dtype=dtype, name="timestep_embedding"
        )(timesteps)
        embedding = keras.layers.Dense(
            time_width, dtype=dtype, name="time_dense_in"
        )(embedding)
        embedding = keras.layers.Activation(
            "silu", dtype=dtype, name="time_activation"
        )(embedding)
        embedding = keras.layers.Dense(
            time_width, dtype=dtype, name="time_dense_out"
        )(embedding)
        if pooled_text_dim is not None:
            inputs["text_embeds"] = keras.Input((pooled_text_dim,), name="text_embeds")
            inputs["time_ids"] = keras.Input((num_time_ids,), name="time_ids")
            added = UNetAddedConditioning(
                time_width, time_ids_dim, num_time_ids, dtype=dtype, name="added_conditioning"
            )(inputs["text_embeds"], inputs["time_ids"])
            embedding = keras.layers.Add(dtype=dtype, name="time_add")([embedding, added])

        x = keras.layers.Conv2D(
            block_channels[0], 3, padding="same", dtype=dtype, name="input_conv"
        )(latents)
        skips = [x]
        for level, channels in enumerate(block_channels):
            for index in range(layers_per_block):
                x = resnet_block(channels, f"down{level}_resnet{index}")(
                    x, embedding
                )
                if attention_levels[level]:
                    x = spatial_transformer(
                        level, f"down{level}_attention{index}"
                    )(x, context)
                skips.append(x)
            if level < num_levels - 1:
                x = UNetDownsample(
                    channels, dtype=dtype, name=f"down{level}_downsample"
                )(x)
                skips.append(x)

        x = resnet_block(block_channels[-1], "mid_resnet0")(x, embedding)
        x = spatial_transformer(num_levels - 1, "mid_attention")(x, context)
        x = resnet_block(block_channels[-1], "mid_resnet1")(x, embedding)

        for level in reversed(range(num_levels)):
            channels = block_channels[level]
            # One block more than on the way down: it takes the skip of the
            # downsampling step (or, on level 0, of the input convolution).
            for index in range(layers_per_block + 1):
                x = keras.layers.Concatenate(
                    dtype=dtype, name=f"up{level}_concat{index}"
                )([x, skips.pop()])
                x = resnet_block(channels, f"up{level}_resnet{index}")(
                    x, embedding
                )
                if attention_levels[level]:
                    x = spatial_transformer(
                        level, f"up{level}_attention{index}"
                    )(x, context)
            if level > 0:
                x = UNetUpsample(
                    channels, dtype=dtype, name=f"up{level}_upsample"
                )(x)

        x = keras.layers.GroupNormalization(
            norm_groups,
            epsilon=resnet_norm_epsilon,
            dtype=dtype,
            name="output_norm",
        )(x)
        x = keras.layers.Activation(
            "silu", dtype=dtype, name="output_activation"
        )(x)
        x = keras.layers.Conv2D(
            latent_channels, 3, padding="same", dtype=dtype, name="output_conv"
        )(x)
        # Samplers do their arithmetic in float32 whatever the policy.
        outputs = ops.cast(x, "float32")

        super().__init__(
            inputs=inputs,
            outputs=outputs,
            **kwargs,
        )
        # Functional's constructor does not take a dtype; keep the policy so
        # that get_config returns it.
        self.dtype_policy = dtype

        # === Config ===
        self.block_channels = block_channels
        self.layers_per_block = layers_per_block
        self.attention_levels = attention_levels
        self.context_dim = context_dim
        self.num_heads = num_heads
        self.head_size = head_size
        self.transformer_projection = transformer_projection
        self.transformer_depth = transformer_depth
        self.norm_groups = norm_groups
        self.latent_channels = latent_channels
        self.input_channels = input_channels
        self.resnet_norm_epsilon = resnet_norm_epsilon
        self.transformer_norm_epsilon = transformer_norm_epsilon
        self.gelu_approximate = gelu_approximate
        self.pooled_text_dim = pooled_text_dim
        self.time_ids_dim = time_ids_dim
        self.num_time_ids = num_time_ids

    @property
    def transformer_depth_per_level(self):
        """Transformer blocks per spatial transformer, one int per level."""
        return _depth_per_level(self.transformer_depth, self.block_channels)

    @property
    def latent_size_multiple(self):
        """Height and width of the latents must be multiples of this."""
        return 2 ** (len(self.block_channels) - 1)

    def __call__(self, inputs, *args, **kwargs):
        # Checked before Keras' own `__call__`, whose error reports would
        # print every input array in full.
        self._check_latent_size(inputs)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        # Also here: JAX trainers reach `call` through `stateless_call`,
        # bypassing `__call__`.
        self._check_latent_size(inputs)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def _check_latent_size(self, inputs):
        # Without this check an odd size fails deep inside, at a skip
        # connection's concatenation, with a message about other shapes.
        if not isinstance(inputs, dict) or "latents" not in inputs:
            return  # Keras' input checks will complain.
        latents = inputs["latents"]
        shape = tuple(getattr(latents, "shape", ()))
        if len(shape) != 4:
            return  # Keras' input checks will complain.
        height, width = shape[1:3]
        multiple = self.latent_size_multiple
        for size in (height, width):
            # Unknown (traced) sizes cannot be checked here.
            if isinstance(size, int) and size % multiple:
                raise ValueError(
                    "The latents' height and width must be divisible by "
                    f"{multiple} (2 ** (number of levels - 1), for "
                    f"{len(self.block_channels)} levels). Received: "
                    f"latents of shape {shape}"
                )

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "block_channels": list(self.block_channels),
            "layers_per_block": self.layers_per_block,
            "attention_levels": list(self.attention_levels),
            "context_dim": self.context_dim,
            "num_heads": self.num_heads,
            "head_size": self.head_size,
            "transformer_projection": self.transformer_projection,
            "transformer_depth": (
                list(self.transformer_depth)
                if isinstance(self.transformer_depth, (list, tuple))
                else self.transformer_depth
            ),
            "norm_groups": self.norm_groups,
            "latent_channels": self.latent_channels,
            "resnet_norm_epsilon": self.resnet_norm_epsilon,
            "transformer_norm_epsilon": self.transformer_norm_epsilon,
            "gelu_approximate": self.gelu_approximate,
            "pooled_text_dim": self.pooled_text_dim,
            "time_ids_dim": self.time_ids_dim,
            "num_time_ids": self.num_time_ids,
            # Only inpainting UNets have it, so text-to-image configs (and
            # what is keyed on them) stay as they were.
            **({"input_channels": self.input_channels} if self.input_channels else {}),
        }

    @classmethod
    def from_config(cls, config):
        # Functional's from_config would rebuild a plain keras.Model from a
        # graph description; ours rebuilds the graph from the sizes.
        return cls(**config)


def _depth_per_level(transformer_depth, block_channels):
    """`transformer_depth` as one positive int per level."""
    if isinstance(transformer_depth, (list, tuple)):
        depths = tuple(transformer_depth)
    else:
        depths = (transformer_depth,) * len(block_channels)
    if len(depths) != len(block_channels) or any(
        isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in depths
    ):
        raise ValueError(
            "`transformer_depth` must be a positive int, or one per level of "
            f"`block_channels`. Received: transformer_depth={transformer_depth!r}, "
            f"block_channels={block_channels}"
        )
    return depths


def _heads_per_level(block_channels, num_heads, head_size):
    """Returns `(num_heads, head_size)` for each level."""
    if (num_heads is None) == (head_size is None):
        raise ValueError(
            "Give exactly one of `num_heads` (same number of heads on every "
            "level, SD 1.x) and `head_size` (same head size on every level, "
            f"SD 2.x). Received: num_heads={num_heads}, head_size={head_size}"
        )
    divisor = num_heads if num_heads is not None else head_size
    name = "num_heads" if num_heads is not None else "head_size"
    if divisor <= 0 or any(c % divisor for c in block_channels):
        raise ValueError(
            f"`{name}` must be positive and divide every level's channels. "
            f"Received: {name}={divisor}, block_channels={block_channels}"
        )
    if num_heads is not None:
        return [(num_heads, c // num_heads) for c in block_channels]
    return [(c // head_size, head_size) for c in block_channels]


def _check_sizes(
    block_channels, attention_levels, transformer_projection, norm_groups
):
    """Raises a ValueError naming the first inconsistent size."""
    if not block_channels:
        raise ValueError(
            "`block_channels` must name at least one level. "
            f"Received: block_channels={block_channels}"
        )
    if len(attention_levels) != len(block_channels):
        raise ValueError(
            "`attention_levels` must have one entry per level of "
            "`block_channels`. Received: "
            f"attention_levels={attention_levels}, "
            f"block_channels={block_channels}"
        )
    if transformer_projection not in PROJECTIONS:
        raise ValueError(
            f"`transformer_projection` must be one of {PROJECTIONS}. "
            f"Received: transformer_projection={transformer_projection!r}"
        )
    if any(c % norm_groups for c in block_channels):
        raise ValueError(
            "`norm_groups` must divide every level's channels. Received: "
            f"norm_groups={norm_groups}, block_channels={block_channels}"
        )
