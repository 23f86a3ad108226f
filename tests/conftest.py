"""Shared test set-up.

The Keras backend is chosen before any test module imports Keras: the
suite runs under TensorFlow unless KERAS_BACKEND says otherwise; .ci/run
runs the backend-agnostic tests again with KERAS_BACKEND=jax.
"""

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# --- The embedded model, shared by the session ------------------------------
# Several folders generate with tiny-shapes and read the images with the
# shipped shapes classifier; loading each costs seconds, so they are loaded
# once. Tests must not change them (trainers' tests add placeholder tokens
# to their own backbone, tests/trainers/conftest.py's `tiny_backbone`).


@pytest.fixture(scope="session")
def tiny_shapes_pipeline():
    """A `TextToImagePipeline` of the embedded `tiny-shapes` model (shipped weights)."""
    from studio.models import StableDiffusionBackbone
    from studio.pipelines import TextToImagePipeline

    return TextToImagePipeline(StableDiffusionBackbone.from_preset("tiny-shapes"))


@pytest.fixture(scope="session")
def read_shapes():
    """`read(images)` -> what the shipped shapes classifier sees.

    Returns a list of (colour, shape, background), one per image.
    """
    from studio.evaluation.shapes_classifier import ShapesClassifier

    classifier = ShapesClassifier.from_package()

    def read(images):
        seen = classifier.predict_attributes(images)
        return list(zip(seen["colour"], seen["shape"], seen["background"]))

    return read


# --- A tiny SDXL pipeline in PyTorch, shared by tests/models/sdxl and tests/interop ---
# SDXL base's layout (no attention on the top level, deeper transformers
# below, linear projections, added text-time embedding, CLIP ViT-L +
# projected bigG) at widths whose heads are 64 wide, as single files'
# readers infer them. Built once per session; skipped without torch.

SDXL_TINY = {
    "latent_size": 8,
    "image_size": 16,  # Two VAE levels.
    "clip_l_width": 64,
    "clip_g_width": 128,
    "pooled_width": 64,
    "time_ids_dim": 8,
}


@pytest.fixture(scope="session")
def sdxl_reference(tmp_path_factory):
    """Random tiny SDXL modules (diffusers, transformers), saved by
    `StableDiffusionXLPipeline.save_pretrained`.

    Returns a namespace: `folder`, `pipeline`, `unet`, `vae`,
    `text_encoder`, `text_encoder_2`, `sizes` (`SDXL_TINY`).
    """
    import types

    import numpy as np

    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    from studio.interop.hf_tokenizer_files import write_hf_tokenizer
    from studio.tokenizers import CLIPTokenizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    sizes = SDXL_TINY
    folder = tmp_path_factory.mktemp("sdxl-tiny")
    tokenizer_folders = {}
    for name, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
        path = folder / f"source-{name}"
        path.mkdir()
        write_hf_tokenizer(CLIPTokenizer.byte_level(pad_token=pad), str(path))
        tokenizer_folders[name] = str(path)
    tokenizers = {
        name: transformers.CLIPTokenizer.from_pretrained(path)
        for name, path in tokenizer_folders.items()
    }
    vocabulary = 514
    common = dict(
        vocab_size=vocabulary,
        max_position_embeddings=77,
        num_hidden_layers=3,
        bos_token_id=vocabulary - 2,
        eos_token_id=vocabulary - 1,
    )
    text_encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            hidden_size=sizes["clip_l_width"],
            intermediate_size=2 * sizes["clip_l_width"],
            num_attention_heads=sizes["clip_l_width"] // 64,
            hidden_act="quick_gelu",
            pad_token_id=vocabulary - 1,
            **common,
        )
    )
    text_encoder_2 = transformers.CLIPTextModelWithProjection(
        transformers.CLIPTextConfig(
            hidden_size=sizes["clip_g_width"],
            intermediate_size=2 * sizes["clip_g_width"],
            num_attention_heads=sizes["clip_g_width"] // 64,
            hidden_act="gelu",
            projection_dim=sizes["pooled_width"],
            pad_token_id=0,
            **common,
        )
    )
    unet = diffusers.UNet2DConditionModel(
        sample_size=sizes["latent_size"],
        block_out_channels=(64, 64, 128),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(1, 1, 2),
        transformer_layers_per_block=(1, 1, 2),
        cross_attention_dim=sizes["clip_l_width"] + sizes["clip_g_width"],
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=sizes["time_ids_dim"],
        projection_class_embeddings_input_dim=sizes["pooled_width"] + 6 * sizes["time_ids_dim"],
        norm_num_groups=32,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=sizes["image_size"],
        scaling_factor=0.13025,
    )
    # Norm scales and biases away from 1 and 0, so that a swapped pair shows.
    with torch.no_grad():
        for module in (unet, vae, text_encoder, text_encoder_2):
            for name, parameter in module.named_parameters():
                if parameter.ndim == 1:
                    parameter.normal_(1.0 if name.endswith(".weight") else 0.0, 0.2)
            module.eval()
    scheduler = diffusers.DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False
    )
    pipeline = diffusers.StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizers["tokenizer"],
        tokenizer_2=tokenizers["tokenizer_2"],
        unet=unet,
        scheduler=scheduler,
    )
    saved = folder / "pipeline"
    pipeline.save_pretrained(str(saved))
    rng = np.random.default_rng(7)
    return types.SimpleNamespace(
        folder=str(saved),
        pipeline=pipeline,
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        sizes=sizes,
        rng=rng,
    )


@pytest.fixture(scope="session")
def sdxl_imported(sdxl_reference):
    """The tiny SDXL folder imported by `studio.interop.import_model` (once)."""
    from studio.interop import import_model

    return import_model(sdxl_reference.folder)
