"""Tests of UNet and its blocks on tiny configs (any backend)."""

import json

import keras
import numpy as np
import pytest

from studio.models.unet import UNet
from studio.models.unet_resnet_block import UNetResnetBlock
from studio.models.unet_spatial_transformer import UNetSpatialTransformer
from studio.models.unet_timestep_embedding import UNetTimestepEmbedding

# Two levels (one down/upsampling step), attention on the first level only, so
# both kinds of level and the middle block are exercised.
TINY_CONFIG = {
    "block_channels": [32, 64],
    "layers_per_block": 1,
    "attention_levels": [True, False],
    "context_dim": 32,
    "num_heads": 2,
    "norm_groups": 8,
}
# Not square, to catch swapped height and width. Tests share these sizes
# because under JAX every new shape costs a compilation of every operation.
LATENT_HEIGHT, LATENT_WIDTH = 8, 16
CONTEXT_LENGTH = 5


def make_inputs(batch_size=2, timesteps=(10, 900), height=LATENT_HEIGHT,
                width=LATENT_WIDTH, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "latents": rng.standard_normal((batch_size, height, width, 4)).astype(
            "float32"
        ),
        "timesteps": np.asarray(timesteps, dtype="int32"),
        "context": rng.standard_normal(
            (batch_size, CONTEXT_LENGTH, TINY_CONFIG["context_dim"])
        ).astype("float32"),
    }


def run(model, inputs):
    return keras.ops.convert_to_numpy(model(inputs))


def with_batch_items_alike(inputs, key):
    """Returns `inputs` whose batch items of `inputs[key]` all equal item 0."""
    inputs = dict(inputs)
    inputs[key] = np.repeat(inputs[key][:1], len(inputs[key]), axis=0)
    return inputs


@pytest.fixture(scope="module")
def tiny_unet():
    keras.utils.set_random_seed(0)
    return UNet(**TINY_CONFIG)


def test_output_has_latent_shape_and_float32(tiny_unet):
    outputs = tiny_unet(make_inputs())
    assert tuple(outputs.shape) == (2, LATENT_HEIGHT, LATENT_WIDTH, 4)
    assert keras.backend.standardize_dtype(outputs.dtype) == "float32"
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(outputs)))


def test_config_round_trips_through_json(tiny_unet):
    config = tiny_unet.get_config()
    rebuilt = UNet.from_config(json.loads(json.dumps(config)))
    assert isinstance(rebuilt, UNet)
    assert rebuilt.get_config() == config
    rebuilt.set_weights(tiny_unet.get_weights())
    inputs = make_inputs()
    np.testing.assert_allclose(run(rebuilt, inputs), run(tiny_unet, inputs),
                               atol=1e-6)


def test_keras_file_round_trip(tiny_unet, tmp_path):
    path = str(tmp_path / "unet.keras")
    tiny_unet.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, UNet)
    inputs = make_inputs()
    np.testing.assert_allclose(run(loaded, inputs), run(tiny_unet, inputs),
                               atol=1e-6)


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(
            "mixed_float16",
            marks=pytest.mark.skipif(
                keras.config.backend() == "jax",
                reason="XLA:CPU cannot compile the float16 matmul with float32 "
                "accumulation of jax.nn.dot_product_attention (GPUs can)",
            ),
        ),
        "mixed_bfloat16",
    ],
)
def test_mixed_precision_computes_in_half_and_returns_float32(
    tiny_unet, policy
):
    model = UNet(**TINY_CONFIG, dtype=policy)
    assert model.get_config()["dtype"] == keras.dtype_policies.serialize(
        keras.dtype_policies.get(policy)
    )
    resnet = next(l for l in model.layers if isinstance(l, UNetResnetBlock))
    assert resnet.conv1.compute_dtype == policy.split("_")[1]
    assert resnet.conv1.kernel.dtype == "float32"
    model.set_weights(tiny_unet.get_weights())
    inputs = make_inputs()
    # Compiled: under JAX, one compilation of the whole model is much faster
    # than the eager one-by-one compilation of every operation in half types.
    outputs = model.predict_on_batch(inputs)
    assert outputs.dtype == np.float32
    # Same function as in float32, up to half-precision rounding.
    expected = run(tiny_unet, inputs)
    error = np.max(np.abs(outputs - expected))
    assert error < 0.05 * np.max(np.abs(expected))


@pytest.mark.parametrize("height, width", [(7, 8), (8, 9)])
def test_rejects_latents_not_divisible_by_downsampling(
    tiny_unet, height, width
):
    with pytest.raises(ValueError, match="divisible by 2.*Received"):
        tiny_unet(make_inputs(height=height, width=width))


def test_rejects_bad_latents_in_stateless_call(tiny_unet):
    # The path of JAX trainers, which skips `__call__`.
    with pytest.raises(ValueError, match="divisible by 2"):
        tiny_unet.stateless_call(
            [v.value for v in tiny_unet.trainable_variables],
            [v.value for v in tiny_unet.non_trainable_variables],
            make_inputs(height=7),
        )


def test_latent_multiple_grows_with_levels():
    model = UNet(**{**TINY_CONFIG, "block_channels": [32, 64, 64],
                    "attention_levels": [True, False, False]})
    assert model.latent_size_multiple == 4
    with pytest.raises(ValueError, match="divisible by 4"):
        model(make_inputs(height=6, width=8))


def test_timesteps_condition_each_batch_item(tiny_unet):
    inputs = with_batch_items_alike(
        with_batch_items_alike(make_inputs(timesteps=(10, 900)), "latents"),
        "context",
    )
    outputs = run(tiny_unet, inputs)
    assert np.max(np.abs(outputs[0] - outputs[1])) > 1e-3
    same_time = run(tiny_unet, {**inputs, "timesteps": np.array([10, 10])})
    np.testing.assert_allclose(same_time[0], same_time[1], atol=1e-5)
    np.testing.assert_allclose(same_time[0], outputs[0], atol=1e-5)


def test_int_and_float_timesteps_agree(tiny_unet):
    inputs = make_inputs(timesteps=(3, 999))
    as_float = {**inputs, "timesteps": inputs["timesteps"].astype("float32")}
    np.testing.assert_allclose(run(tiny_unet, as_float), run(tiny_unet, inputs),
                               atol=1e-6)


def test_context_conditions_each_batch_item(tiny_unet):
    inputs = with_batch_items_alike(
        make_inputs(timesteps=(500, 500)), "latents"
    )
    outputs = run(tiny_unet, inputs)
    assert np.max(np.abs(outputs[0] - outputs[1])) > 1e-3
    same_context = run(tiny_unet, with_batch_items_alike(inputs, "context"))
    np.testing.assert_allclose(same_context[0], same_context[1], atol=1e-5)


def test_each_resnet_and_transformer_block_is_its_own_layer(tiny_unet):
    # Rematerialisation wraps these layers one by one.
    levels = len(TINY_CONFIG["block_channels"])
    per_level = TINY_CONFIG["layers_per_block"]
    resnets = [l for l in tiny_unet.layers if isinstance(l, UNetResnetBlock)]
    transformers = [
        l for l in tiny_unet.layers if isinstance(l, UNetSpatialTransformer)
    ]
    # Down, middle (2), up (one more per level).
    assert len(resnets) == levels * per_level + 2 + levels * (per_level + 1)
    # Only level 0 has attention, plus the middle block.
    assert len(transformers) == per_level + 1 + (per_level + 1)


def test_head_size_config_with_linear_projection_and_depth():
    model = UNet(**{**TINY_CONFIG, "num_heads": None, "head_size": 16,
                    "transformer_projection": "linear", "transformer_depth": 2,
                    "attention_levels": [True, True]})
    transformers = {
        l.name: l for l in model.layers if isinstance(l, UNetSpatialTransformer)
    }
    assert transformers["down0_attention0"].num_heads == 2
    assert transformers["down1_attention0"].num_heads == 4
    assert transformers["mid_attention"].head_size == 16
    assert len(transformers["mid_attention"].transformer_blocks) == 2
    # Dense projections have 2-D kernels, 1x1 convolutions 4-D ones.
    assert len(transformers["mid_attention"].input_projection.kernel.shape) == 2
    outputs = model(make_inputs())
    assert tuple(outputs.shape) == (2, LATENT_HEIGHT, LATENT_WIDTH, 4)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_heads": None}, "exactly one of `num_heads`"),
        ({"head_size": 16}, "exactly one of `num_heads`"),
        ({"num_heads": 3}, "divide every level"),
        ({"attention_levels": [True]}, "one entry per level"),
        ({"transformer_projection": "dense"}, "must be one of"),
        ({"norm_groups": 12}, "`norm_groups` must divide"),
        ({"block_channels": [], "attention_levels": []}, "at least one level"),
    ],
)
def test_rejects_inconsistent_sizes(overrides, message):
    with pytest.raises(ValueError, match=message):
        UNet(**{**TINY_CONFIG, **overrides})


def test_timestep_embedding_formula():
    timesteps = np.array([0, 1, 250, 999], dtype="int32")
    dim, max_period = 8, 10000
    frequencies = np.exp(-np.log(max_period) * np.arange(dim // 2) / (dim // 2))
    angles = timesteps[:, None] * frequencies[None, :]
    expected = np.concatenate([np.cos(angles), np.sin(angles)], axis=-1)
    layer = UNetTimestepEmbedding(dim, max_period=max_period)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(timesteps)), expected, atol=1e-5
    )


def test_timestep_embedding_keeps_float32_angles_under_float16():
    # 999.7 rounds to 999.5 in float16, which would move the fastest
    # sinusoid by 0.2 radians.
    timesteps = np.array([999.7], dtype="float32")
    exact = UNetTimestepEmbedding(32)(timesteps)
    half = UNetTimestepEmbedding(32, dtype="mixed_float16")(timesteps)
    assert keras.backend.standardize_dtype(half.dtype) == "float16"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(half).astype("float32"),
        keras.ops.convert_to_numpy(exact),
        atol=2e-3,
    )
