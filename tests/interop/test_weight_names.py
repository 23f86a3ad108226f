"""The name tables cover every weight once, with the released files' names."""

import numpy as np
import pytest

from studio.interop.text_encoder_names import (
    DIFFUSERS_PREFIX,
    HUGGING_FACE,
    LDM_CLIP_PREFIX,
    LDM_OPEN_CLIP_PREFIX,
    OPEN_CLIP,
    text_encoder_weight_names,
)
from studio.interop.unet_names import DIFFUSERS, LDM, unet_weight_names
from studio.interop.vae_names import vae_decoder_weight_names, vae_encoder_weight_names
from studio.interop.weight_transfer import find_layer, torch_weights

# SD 1.5's layout (levels, blocks per level, attention levels) at small widths:
# the tensor names do not depend on the widths.
SD1_LAYOUT_UNET = {
    "block_channels": [8, 16, 32, 32],
    "layers_per_block": 2,
    "attention_levels": [True, True, True, False],
    "context_dim": 16,
    "num_heads": 8,
    "norm_groups": 8,
}
SD1_LAYOUT_VAE = {"block_channels": [8, 16, 32, 32], "layers_per_block": 2, "norm_groups": 8}
# Tensors in the released SD 1.x files (sd-v1-5.safetensors; diffusers'
# unet/, vae/ and text_encoder/ hold as many).
RELEASED_COUNTS = {"unet": 686, "vae": 248, "text_encoder": 196}
UNET_CONFIGS = {
    "sd1-layout": SD1_LAYOUT_UNET,
    "sd2-layout": {
        "block_channels": [16, 32],
        "layers_per_block": 1,
        "attention_levels": [True, True],
        "context_dim": 16,
        "head_size": 8,
        "transformer_projection": "linear",
        "norm_groups": 8,
    },
    "deeper-transformers": {
        "block_channels": [16, 32, 32],
        "layers_per_block": 1,
        "attention_levels": [False, True, True],
        "context_dim": 8,
        "num_heads": 2,
        "transformer_depth": 2,
        "norm_groups": 8,
    },
}


def _check_table(network, names):
    """Every Keras weight in exactly one row; PyTorch names unique."""
    layers = [id(find_layer(network, keras_path)) for keras_path, _, _ in names]
    assert len(set(layers)) == len(layers), "a layer appears twice"
    tensors = torch_weights(network, names)
    keys = [key for key, _, _ in tensors]
    assert len(set(keys)) == len(keys), "a PyTorch name appears twice"
    assert sum(int(np.prod(shape)) for _, shape, _ in tensors) == network.count_params()
    return set(keys)


@pytest.fixture(scope="module")
def unets():
    """The UNets of `UNET_CONFIGS`, built once."""
    from studio.models import UNet

    return {name: UNet(**config) for name, config in UNET_CONFIGS.items()}


@pytest.fixture(scope="module")
def vae():
    """A VAE encoder and decoder of SD's layout, built once."""
    from studio.models import VAEDecoder, VAEEncoder

    return VAEEncoder(**SD1_LAYOUT_VAE), VAEDecoder(**SD1_LAYOUT_VAE)


@pytest.mark.parametrize("config", sorted(UNET_CONFIGS))
@pytest.mark.parametrize("layout", [DIFFUSERS, LDM])
def test_unet_table_covers_every_weight_once(unets, config, layout):
    unet = unets[config]
    _check_table(unet, unet_weight_names(unet, layout))


@pytest.mark.parametrize("layout", [DIFFUSERS, LDM])
def test_vae_tables_cover_every_weight_once(vae, layout):
    encoder, decoder = vae
    keys = _check_table(encoder, vae_encoder_weight_names(encoder, layout))
    keys |= _check_table(decoder, vae_decoder_weight_names(decoder, layout))
    assert len(keys) == RELEASED_COUNTS["vae"]


@pytest.fixture(scope="module")
def text_encoder():
    """A text encoder of SD 1.x's depth (12 layers), built once."""
    from studio.models import CLIPTextEncoder

    return CLIPTextEncoder(
        vocabulary_size=20,
        sequence_length=7,
        hidden_dim=16,
        num_layers=12,
        num_heads=2,
        intermediate_dim=32,
    )


@pytest.mark.parametrize(
    "layout, prefix",
    [
        (HUGGING_FACE, DIFFUSERS_PREFIX),
        (HUGGING_FACE, LDM_CLIP_PREFIX),
        (OPEN_CLIP, LDM_OPEN_CLIP_PREFIX),
    ],
)
def test_text_encoder_table_covers_every_weight_once(text_encoder, layout, prefix):
    encoder = text_encoder
    keys = _check_table(encoder, text_encoder_weight_names(encoder, layout, prefix))
    assert all(key.startswith(prefix) for key in keys)
    if layout == HUGGING_FACE:
        assert len(keys) == RELEASED_COUNTS["text_encoder"]


def test_sd1_layout_has_the_released_single_file_names(unets, vae):
    unet = unets["sd1-layout"]
    keys = {key for key, _, _ in torch_weights(unet, unet_weight_names(unet, LDM))}
    assert len(keys) == RELEASED_COUNTS["unet"]
    prefix = "model.diffusion_model."
    for name in (
        "time_embed.0.weight",
        "input_blocks.0.0.weight",
        "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        "input_blocks.3.0.op.weight",
        "input_blocks.4.0.skip_connection.weight",
        "input_blocks.11.0.out_layers.3.weight",
        "middle_block.1.proj_in.weight",
        "middle_block.2.emb_layers.1.bias",
        "output_blocks.2.1.conv.weight",  # Upsampler of the level without attention.
        "output_blocks.5.2.conv.weight",  # ... and of one with attention.
        "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight",
        "out.2.bias",
    ):
        assert prefix + name in keys, name
    assert prefix + "output_blocks.11.2.conv.weight" not in keys  # No upsampler at full size.

    encoder, decoder = vae
    keys = {key for key, _, _ in torch_weights(encoder, vae_encoder_weight_names(encoder, LDM))}
    keys |= {key for key, _, _ in torch_weights(decoder, vae_decoder_weight_names(decoder, LDM))}
    prefix = "first_stage_model."
    for name in (
        "encoder.down.1.block.0.nin_shortcut.weight",
        "encoder.down.2.downsample.conv.weight",
        "encoder.mid.attn_1.proj_out.weight",
        "quant_conv.weight",
        "post_quant_conv.bias",
        "decoder.up.3.upsample.conv.weight",  # Decoder levels count from the image side.
        "decoder.up.1.block.0.nin_shortcut.weight",
        "decoder.up.0.block.2.conv2.weight",
    ):
        assert prefix + name in keys, name
    assert prefix + "decoder.up.0.upsample.conv.weight" not in keys


def test_layouts_of_projections(vae):
    """Conv kernels and 1x1 convs standing for Linear go to PyTorch's layouts."""
    encoder = vae[0]
    rng = np.random.default_rng(0)
    for variable in encoder.weights:
        variable.assign(rng.standard_normal(variable.shape))
    attention = encoder.get_layer("mid_attention")
    conv = encoder.get_layer("input_conv")
    shapes = {}
    for layout in (DIFFUSERS, LDM):
        for key, shape, read in torch_weights(encoder, vae_encoder_weight_names(encoder, layout)):
            shapes[key] = (shape, read())
    # diffusers' attention projections are Linear: [out, in].
    shape, value = shapes["encoder.mid_block.attentions.0.to_q.weight"]
    np.testing.assert_array_equal(value, np.asarray(attention.query.kernel)[0, 0].T)
    # LDM's are 1x1 convs: [out, in, 1, 1].
    shape, value = shapes["first_stage_model.encoder.mid.attn_1.q.weight"]
    np.testing.assert_array_equal(value[:, :, 0, 0], np.asarray(attention.query.kernel)[0, 0].T)
    # Conv kernels: Keras [kh, kw, in, out] -> PyTorch [out, in, kh, kw].
    shape, value = shapes["encoder.conv_in.weight"]
    kernel = np.asarray(conv.kernel)
    assert shape == (kernel.shape[3], kernel.shape[2], 3, 3)
    np.testing.assert_array_equal(value[5, 1, 0, 2], kernel[0, 2, 1, 5])
