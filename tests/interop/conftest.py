"""Tiny Stable Diffusion models, in Keras and in PyTorch, for the interop tests.

Two families laid out like the releases: "sd1" (conv projections in the
UNet's transformers, 8 heads, a quick-GELU CLIP text encoder, epsilon
prediction) and "sd2" (linear projections, 64-wide heads, an exact-GELU
text encoder padded with "!", v-prediction, attention on every level).
What a single file cannot record follows the releases too (32 GroupNorm
groups, 64-wide text-encoder heads), so each model can go through both
layouts. Everything is small: 8x8 latents, 32x32 images, widths 32-128,
a 514-token byte-level vocabulary.

The PyTorch references (diffusers' `UNet2DConditionModel` and
`AutoencoderKL`, transformers' `CLIPTextModel`) are built only by the
fixtures that need them, which skip when torch, diffusers or transformers
are missing.
"""

import contextlib
import json
import os
import types

import numpy as np
import pytest

VOCABULARY_SIZE = 514  # The byte-level tokenizer's tokens.
TEXT_WIDTH = 128  # Two 64-wide heads, as a single file's readers infer.
SEQUENCE_LENGTH = 77
LATENT_SIZE = 8
IMAGE_SIZE = 32
VAE_SCALE = 2  # Two VAE levels: images are twice the latents' size.
KERAS_CV_GROUP_NORM_EPSILON = 1e-5
FAMILIES = {
    "sd1": {
        "unet": {
            "block_out_channels": (32, 64),
            "layers_per_block": 2,
            "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
            "attention_head_dim": 8,
            "use_linear_projection": False,
        },
        "hidden_act": "quick_gelu",
        "prediction_type": "epsilon",
        "pad_token": "<|endoftext|>",
    },
    "sd2": {
        "unet": {
            "block_out_channels": (64, 128),
            "layers_per_block": 1,
            "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            "attention_head_dim": (1, 2),  # diffusers' name for the head counts.
            "use_linear_projection": True,
        },
        "hidden_act": "gelu",
        "prediction_type": "v_prediction",
        "pad_token": "!",
    },
}
# Our networks' sizes for the same families, for tests without PyTorch.
STUDIO_CONFIGS = {
    "sd1": {
        "unet": {
            "block_channels": [32, 64],
            "layers_per_block": 2,
            "attention_levels": [True, False],
            "context_dim": TEXT_WIDTH,
            "num_heads": 8,
            "transformer_projection": "conv",
            "norm_groups": 32,
        },
        "intermediate_activation": "quick_gelu",
    },
    "sd2": {
        "unet": {
            "block_channels": [64, 128],
            "layers_per_block": 1,
            "attention_levels": [True, True],
            "context_dim": TEXT_WIDTH,
            "head_size": 64,
            "transformer_projection": "linear",
            "norm_groups": 32,
        },
        "intermediate_activation": "gelu",
    },
}
TINY_VAE = {
    "block_channels": [32, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_groups": 32,
}


def _build_studio_backbone(family, seed=0, diffusers_numerics=False):
    """A random `StableDiffusionBackbone` of `family`, built by our code only.

    Its networks keep their default (KerasCV) numerics, as the presets do,
    unless `diffusers_numerics`: then they compute what the same model
    imported from a diffusers folder or a single file computes.
    """
    import keras

    from studio.interop.diffusers_configs import diffusers_unet_numerics, diffusers_vae_numerics
    from studio.models import CLIPTextEncoder, StableDiffusionBackbone, UNet, VAEDecoder, VAEEncoder
    from studio.tokenizers import CLIPTokenizer

    keras.utils.set_random_seed(seed)
    config = STUDIO_CONFIGS[family]
    unet_numerics = diffusers_unet_numerics() if diffusers_numerics else {}
    vae_numerics = diffusers_vae_numerics() if diffusers_numerics else {}
    pad = FAMILIES[family]["pad_token"]
    backbone = StableDiffusionBackbone(
        text_encoder=CLIPTextEncoder(
            vocabulary_size=VOCABULARY_SIZE,
            sequence_length=SEQUENCE_LENGTH,
            hidden_dim=TEXT_WIDTH,
            num_layers=2,
            num_heads=TEXT_WIDTH // 64,
            intermediate_dim=2 * TEXT_WIDTH,
            intermediate_activation=config["intermediate_activation"],
            name="text_encoder",
        ),
        unet=UNet(name="unet", **config["unet"], **unet_numerics),
        vae_encoder=VAEEncoder(name="vae_encoder", **TINY_VAE, **vae_numerics),
        vae_decoder=VAEDecoder(name="vae_decoder", **TINY_VAE, **vae_numerics),
        tokenizer=CLIPTokenizer.byte_level(pad_token=pad),
        prediction_type=FAMILIES[family]["prediction_type"],
        image_size=LATENT_SIZE * VAE_SCALE,
        noise_schedule={
            "num_train_timesteps": 1000,
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
        },
        name=f"tiny-{family}",
    )
    # Random biases and norms too, so that a transposed or swapped tensor shows.
    rng = np.random.default_rng(seed)
    for network in backbone.components.values():
        for variable in network.weights:
            if len(variable.shape) == 1:
                mean = 1.0 if variable.path.endswith("gamma") else 0.0
                variable.assign(rng.normal(mean, 0.2, variable.shape))
    return backbone


@pytest.fixture(scope="session")
def inputs():
    """Fixed inputs for every network (NHWC, as our networks take them)."""
    rng = np.random.default_rng(1234)
    return {
        "latents": rng.standard_normal((2, LATENT_SIZE, LATENT_SIZE, 4)).astype("float32"),
        "timesteps": np.array([10, 999], "int32"),
        "context": rng.standard_normal((2, SEQUENCE_LENGTH, TEXT_WIDTH)).astype("float32"),
        "images": rng.uniform(-1, 1, (2, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"),
        "decoder_latents": rng.standard_normal((2, 4, 4, 4)).astype("float32"),
        "token_ids": rng.integers(0, VOCABULARY_SIZE, (2, SEQUENCE_LENGTH)).astype("int32"),
    }


def _keras_outputs(backbone, inputs):
    """Each network's output on `inputs`, as numpy arrays (NHWC)."""
    return {
        "unet": np.asarray(
            backbone.unet(
                {
                    "latents": inputs["latents"],
                    "timesteps": inputs["timesteps"],
                    "context": inputs["context"],
                }
            )
        ),
        "vae_encoder": np.asarray(backbone.vae_encoder(inputs["images"])),
        "vae_decoder": np.asarray(backbone.vae_decoder(inputs["decoder_latents"])),
        "text_encoder": np.asarray(backbone.text_encoder(inputs["token_ids"])),
    }


def _torch_outputs(unet, vae, text_encoder, inputs):
    """The PyTorch modules' outputs on `inputs`, transposed to NHWC."""
    import torch

    def nchw(array):
        return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))

    def nhwc(tensor):
        return tensor.numpy().transpose(0, 2, 3, 1)

    with torch.no_grad():
        return {
            "unet": nhwc(
                unet(
                    nchw(inputs["latents"]),
                    torch.from_numpy(inputs["timesteps"]).long(),
                    torch.from_numpy(inputs["context"]),
                ).sample
            ),
            # Our encoder returns the moments: quant_conv(encoder(x)).
            "vae_encoder": nhwc(vae.quant_conv(vae.encoder(nchw(inputs["images"])))),
            "vae_decoder": nhwc(vae.decode(nchw(inputs["decoder_latents"])).sample),
            "text_encoder": text_encoder(
                torch.from_numpy(inputs["token_ids"]).long()
            ).last_hidden_state.numpy(),
        }


@contextlib.contextmanager
def _keras_cv_numerics(*modules):
    """Makes diffusers modules compute with KerasCV's numerics, for a while.

    KerasCV's: GroupNorm epsilon 1e-5 everywhere (diffusers: 1e-6 in the VAE
    and in the UNet's transformers) and the tanh form of GELU in the UNet's
    GEGLU (diffusers: exact). Only for the test that our networks' defaults
    are KerasCV's numerics; every other comparison is with diffusers as is.
    """
    import torch
    import torch.nn.functional as F
    from diffusers.models.activations import GEGLU

    saved = []
    for module in modules:
        for part in module.modules():
            if isinstance(part, torch.nn.GroupNorm):
                saved.append((part, "eps", part.eps))
                part.eps = KERAS_CV_GROUP_NORM_EPSILON
            elif isinstance(part, GEGLU):
                saved.append((part, "gelu", None))
                part.gelu = lambda gate: F.gelu(gate, approximate="tanh")
    try:
        yield
    finally:
        for part, name, value in saved:
            if value is None:
                del part.__dict__[name]
            else:
                setattr(part, name, value)


def _write_reference_folder(folder, family, unet, vae, text_encoder):
    """Saves PyTorch modules as a diffusers Stable Diffusion folder."""
    from studio.tokenizers.clip_vocabulary import byte_level_vocabulary

    unet.save_pretrained(os.path.join(folder, "unet"))
    vae.save_pretrained(os.path.join(folder, "vae"))
    text_encoder.save_pretrained(os.path.join(folder, "text_encoder"))
    tokenizer = os.path.join(folder, "tokenizer")
    os.makedirs(tokenizer)
    with open(os.path.join(tokenizer, "vocab.json"), "w") as file:
        json.dump(byte_level_vocabulary(), file)
    with open(os.path.join(tokenizer, "merges.txt"), "w") as file:
        file.write("#version: 0.2\n")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": FAMILIES[family]["pad_token"],
    }
    with open(os.path.join(tokenizer, "special_tokens_map.json"), "w") as file:
        json.dump(special, file)
    with open(os.path.join(tokenizer, "tokenizer_config.json"), "w") as file:
        json.dump(
            {"model_max_length": SEQUENCE_LENGTH, "tokenizer_class": "CLIPTokenizer", **special},
            file,
        )
    os.makedirs(os.path.join(folder, "scheduler"))
    with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as file:
        json.dump(
            {
                "_class_name": "DDIMScheduler",
                "beta_start": 0.00085,
                "beta_end": 0.012,
                "beta_schedule": "scaled_linear",
                "num_train_timesteps": 1000,
                "prediction_type": FAMILIES[family]["prediction_type"],
            },
            file,
        )
    with open(os.path.join(folder, "model_index.json"), "w") as file:
        json.dump(
            {
                "_class_name": "StableDiffusionPipeline",
                "feature_extractor": [None, None],
                "requires_safety_checker": False,
                "safety_checker": [None, None],
                "scheduler": ["diffusers", "DDIMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            },
            file,
        )


@pytest.fixture(scope="session", params=sorted(FAMILIES))
def reference(request, tmp_path_factory):
    """Random PyTorch SD modules of one family, saved as a diffusers folder.

    Returns a namespace: `family`, `folder`, `unet`, `vae`, `text_encoder`.
    """
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    # These modules take milliseconds on one thread; with PyTorch's default
    # of one thread per core, competing with TensorFlow's pools for the same
    # cores, each forward pass took seconds (measured: 3-4 s vs 0.02 s).
    torch.set_num_threads(1)
    family = request.param
    spec = FAMILIES[family]
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        cross_attention_dim=TEXT_WIDTH,
        norm_num_groups=32,
        **spec["unet"],
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=IMAGE_SIZE,
    )
    text_encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=VOCABULARY_SIZE,
            hidden_size=TEXT_WIDTH,
            intermediate_size=2 * TEXT_WIDTH,
            num_hidden_layers=2,
            num_attention_heads=TEXT_WIDTH // 64,
            max_position_embeddings=SEQUENCE_LENGTH,
            hidden_act=spec["hidden_act"],
            bos_token_id=VOCABULARY_SIZE - 2,
            eos_token_id=VOCABULARY_SIZE - 1,
            pad_token_id=VOCABULARY_SIZE - 1,
        )
    )
    # Default initialisation leaves norms at 1 and many biases at 0, where a
    # swapped weight and bias, or gamma and beta, would go unnoticed.
    with torch.no_grad():
        for module in (unet, vae, text_encoder):
            for name, parameter in module.named_parameters():
                if parameter.ndim == 1:  # Norm scales (".weight") and biases.
                    parameter.normal_(1.0 if name.endswith(".weight") else 0.0, 0.2)
    for module in (unet, vae, text_encoder):
        module.eval()
    folder = tmp_path_factory.mktemp(f"diffusers-{family}")
    _write_reference_folder(str(folder), family, unet, vae, text_encoder)
    return types.SimpleNamespace(
        family=family, folder=str(folder), unet=unet, vae=vae, text_encoder=text_encoder
    )


# Helpers as fixtures: with --import-mode=importlib, test modules cannot
# import this file.


@pytest.fixture(scope="session")
def families():
    """The two families' PyTorch-side settings (`FAMILIES`)."""
    return FAMILIES


@pytest.fixture(scope="session")
def build_studio_backbone():
    """(family, seed=0, diffusers_numerics=False) -> a random tiny backbone
    built by our code only."""
    return _build_studio_backbone


@pytest.fixture(scope="session")
def keras_outputs():
    """(backbone, inputs) -> dict network -> numpy output (NHWC)."""
    return _keras_outputs


@pytest.fixture(scope="session")
def torch_outputs():
    """(unet, vae, text_encoder, inputs) -> dict network -> numpy output (NHWC)."""
    return _torch_outputs


@pytest.fixture(scope="session")
def keras_cv_numerics():
    """Context manager (*modules): diffusers modules computing with KerasCV's numerics."""
    return _keras_cv_numerics


@pytest.fixture(scope="session")
def assert_outputs_close():
    """(actual, expected, atol, what): atol a number or a dict per network."""

    def check(actual, expected, atol, what):
        for name in expected:
            difference = float(np.max(np.abs(actual[name] - expected[name])))
            limit = atol[name] if isinstance(atol, dict) else atol
            assert difference <= limit, f"{what} {name}: max difference {difference} > {limit}"

    return check


@pytest.fixture(scope="session")
def imported(reference):
    """The reference folder, imported (shared: tests restore what they change)."""
    from studio.interop import import_diffusers_folder

    return import_diffusers_folder(reference.folder)
