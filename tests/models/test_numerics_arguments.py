"""The numerics arguments: KerasCV's by default, diffusers' on request.

Tiny networks (any backend). Their GroupNorm epsilons and GELU form are
read off the built layers, so a value that does not reach a layer shows.
"""

import functools
import json
import math

import keras
import numpy as np
import pytest

from studio.models.numerics_arguments import (
    KERAS_CV_GELU_APPROXIMATE,
    KERAS_CV_GROUP_NORM_EPSILON,
)
from studio.models.unet import UNet
from studio.models.unet_resnet_block import UNetResnetBlock
from studio.models.unet_spatial_transformer import UNetSpatialTransformer
from studio.models.unet_transformer_block import UNetTransformerBlock
from studio.models.vae_attention_block import VAEAttentionBlock
from studio.models.vae_decoder import VAEDecoder
from studio.models.vae_encoder import VAEEncoder
from studio.models.vae_residual_block import VAEResidualBlock

UNET_CONFIG = {
    "block_channels": [32, 64],
    "layers_per_block": 1,
    "attention_levels": [True, False],
    "context_dim": 32,
    "num_heads": 2,
    "norm_groups": 8,
}
VAE_CONFIG = {"block_channels": [32, 32], "layers_per_block": 1, "norm_groups": 8}
# Distinct values, so that an epsilon reaching the wrong layers shows.
UNET_OPTIONS = {
    "resnet_norm_epsilon": 2e-5,
    "transformer_norm_epsilon": 1e-6,
    "gelu_approximate": False,
}
VAE_OPTIONS = {"norm_epsilon": 1e-6}
UNET_DEFAULTS = {
    "resnet_norm_epsilon": KERAS_CV_GROUP_NORM_EPSILON,
    "transformer_norm_epsilon": KERAS_CV_GROUP_NORM_EPSILON,
    "gelu_approximate": KERAS_CV_GELU_APPROXIMATE,
}
# Large enough to move float32 outputs well past round-off on any backend.
OUTPUT_CHANGING_EPSILON = 0.5
NETWORKS = {
    "unet": (UNet, UNET_CONFIG),
    "vae_encoder": (VAEEncoder, VAE_CONFIG),
    "vae_decoder": (VAEDecoder, VAE_CONFIG),
}


def network_inputs(name):
    rng = np.random.default_rng(0)
    if name == "unet":
        return {
            "latents": rng.standard_normal((1, 8, 8, 4)).astype("float32"),
            "timesteps": np.array([500], "int32"),
            "context": rng.standard_normal((1, 5, 32)).astype("float32"),
        }
    if name == "vae_encoder":
        return rng.uniform(-1, 1, (1, 16, 16, 3)).astype("float32")
    return rng.standard_normal((1, 8, 8, 4)).astype("float32")


def build(name, **options):
    keras.utils.set_random_seed(0)
    network_class, config = NETWORKS[name]
    return network_class(**config, **options)


def run(network, name):
    return keras.ops.convert_to_numpy(network(network_inputs(name)))


@functools.cache
def default_network_and_outputs(name):
    """Built once: every test compares against the same default network."""
    network = build(name)
    return network, run(network, name)


def group_norm_epsilons(network):
    """The epsilon of every GroupNormalization in `network`, in order."""
    return [
        layer.epsilon
        for layer in network._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.GroupNormalization)
    ]


def unet_epsilons_by_place(unet):
    """`(resnet and output epsilons, transformer epsilons)` of a UNet."""
    resnet, transformer = set(), set()
    for layer in unet._flatten_layers(include_self=False):
        if isinstance(layer, UNetSpatialTransformer):
            transformer.add(layer.norm.epsilon)
        elif isinstance(layer, UNetResnetBlock):
            resnet.update((layer.norm1.epsilon, layer.norm2.epsilon))
    resnet.add(unet.get_layer("output_norm").epsilon)
    return resnet, transformer


def gelu_forms(unet):
    return {
        layer.gelu_approximate
        for layer in unet._flatten_layers(include_self=False)
        if isinstance(layer, UNetTransformerBlock)
    }


def test_defaults_are_keras_cv_numerics():
    unet, _ = default_network_and_outputs("unet")
    assert {key: unet.get_config()[key] for key in UNET_DEFAULTS} == UNET_DEFAULTS
    assert unet_epsilons_by_place(unet) == ({1e-5}, {1e-5})
    assert gelu_forms(unet) == {True}
    for name in ("vae_encoder", "vae_decoder"):
        vae, _ = default_network_and_outputs(name)
        assert vae.get_config()["norm_epsilon"] == KERAS_CV_GROUP_NORM_EPSILON == 1e-5
        assert set(group_norm_epsilons(vae)) == {1e-5}


def test_unet_options_reach_their_layers():
    unet = build("unet", **UNET_OPTIONS)
    assert unet_epsilons_by_place(unet) == ({2e-5}, {1e-6})
    assert gelu_forms(unet) == {False}


@pytest.mark.parametrize("name", ["vae_encoder", "vae_decoder"])
def test_vae_norm_epsilon_reaches_every_group_norm(name):
    vae = build(name, **VAE_OPTIONS)
    epsilons = group_norm_epsilons(vae)
    # Residual blocks (two each), the attention block and the output norm.
    assert len(epsilons) > 5
    assert set(epsilons) == {1e-6}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_default_equals_keras_cv_values_and_configs_without_them(name):
    """Saved configs predating the arguments rebuild the same network."""
    default, default_outputs = default_network_and_outputs(name)
    keras_cv_values = (
        UNET_DEFAULTS if name == "unet" else {"norm_epsilon": KERAS_CV_GROUP_NORM_EPSILON}
    )
    explicit = build(name, **keras_cv_values)
    legacy_config = {
        key: value for key, value in default.get_config().items() if key not in keras_cv_values
    }
    legacy = type(default).from_config(legacy_config)
    def unnamed(network):
        return {**network.get_config(), "name": None}

    assert unnamed(legacy) == unnamed(explicit) == unnamed(default)
    for other in (explicit, legacy):
        other.set_weights(default.get_weights())
        np.testing.assert_array_equal(run(other, name), default_outputs)


@pytest.mark.parametrize(
    "name, options",
    [
        ("unet", {"resnet_norm_epsilon": OUTPUT_CHANGING_EPSILON}),
        ("unet", {"transformer_norm_epsilon": OUTPUT_CHANGING_EPSILON}),
        ("unet", {"gelu_approximate": False}),
        ("vae_encoder", {"norm_epsilon": OUTPUT_CHANGING_EPSILON}),
        ("vae_decoder", {"norm_epsilon": OUTPUT_CHANGING_EPSILON}),
    ],
)
def test_each_option_changes_the_outputs(name, options):
    default, default_outputs = default_network_and_outputs(name)
    changed = build(name, **options)
    changed.set_weights(default.get_weights())
    difference = np.max(np.abs(run(changed, name) - default_outputs))
    assert difference > 1e-5, f"{options} changed {name}'s outputs by only {difference}"


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_config_round_trips_through_json(name):
    options = UNET_OPTIONS if name == "unet" else VAE_OPTIONS
    network = build(name, **options)
    config = json.loads(json.dumps(network.get_config()))
    assert {key: config[key] for key in options} == options
    rebuilt = type(network).from_config(config)
    assert rebuilt.get_config() == network.get_config()
    rebuilt.set_weights(network.get_weights())
    np.testing.assert_array_equal(run(rebuilt, name), run(network, name))


@pytest.mark.parametrize(
    "layer_class, arguments, options",
    [
        (UNetResnetBlock, (32,), {"norm_groups": 8, "norm_epsilon": 1e-6}),
        (
            UNetSpatialTransformer,
            (2, 16),
            {"norm_groups": 8, "norm_epsilon": 1e-6, "gelu_approximate": False},
        ),
        (UNetTransformerBlock, (2, 16), {"gelu_approximate": False}),
        (VAEResidualBlock, (32,), {"norm_groups": 8, "norm_epsilon": 1e-6}),
        (VAEAttentionBlock, (), {"norm_groups": 8, "norm_epsilon": 1e-6}),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_block_configs_round_trip(layer_class, arguments, options):
    layer = layer_class(*arguments, **options)
    config = json.loads(json.dumps(layer.get_config()))
    assert {key: config[key] for key in options} == options
    assert type(layer).from_config(config).get_config() == layer.get_config()


@pytest.mark.parametrize("value", [0, -1e-6, math.inf, math.nan, "1e-6", None, True])
@pytest.mark.parametrize(
    "name, argument",
    [
        ("unet", "resnet_norm_epsilon"),
        ("unet", "transformer_norm_epsilon"),
        ("vae_encoder", "norm_epsilon"),
        ("vae_decoder", "norm_epsilon"),
    ],
)
def test_rejects_an_epsilon_that_is_not_a_positive_number(name, argument, value):
    network_class, config = NETWORKS[name]
    with pytest.raises(ValueError, match=f"`{argument}` must be a positive number") as error:
        network_class(**config, **{argument: value})
    assert f"Received: {argument}={value!r}" in str(error.value)


@pytest.mark.parametrize("value", ["false", 0, None])
def test_rejects_a_gelu_approximate_that_is_not_a_bool(value):
    with pytest.raises(ValueError, match="`gelu_approximate` must be True") as error:
        UNet(**UNET_CONFIG, gelu_approximate=value)
    assert f"Received: gelu_approximate={value!r}" in str(error.value)
