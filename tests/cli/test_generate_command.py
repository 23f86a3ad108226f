import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from studio.cli.main import main
from studio.images import GenerationParameters, read_parameters

pytestmark = pytest.mark.usefixtures("eager_tensorflow")


def _generate(out, *extra):
    argv = ["generate", "--model", "tiny", "--prompt", "a photo of a cat",
            "--steps", "3", "--seed", "7", "--out", str(out), *extra]
    assert main(argv) == 0
    return sorted(p for p in os.listdir(out) if p.endswith(".png"))


def _pixels(path):
    return np.asarray(Image.open(path))


def test_generate_writes_pngs_with_parameters(tmp_path):
    names = _generate(tmp_path, "--num-images", "2", "--negative-prompt", "blurry",
                      "--size", "64x128", "--guidance", "6")
    assert names == ["00000-7.png", "00001-8.png"]
    for name, seed in zip(names, (7, 8)):
        image = Image.open(tmp_path / name)
        assert image.size == (64, 128)
        assert read_parameters(tmp_path / name) == GenerationParameters(
            prompt="a photo of a cat", negative_prompt="blurry", steps=3,
            sampler="DDIM", guidance_scale=6.0, seed=seed, width=64, height=128,
            model="tiny",
        )


def test_same_seed_same_pixels_and_negative_prompt_matters(tmp_path):
    first = _generate(tmp_path / "a")
    second = _generate(tmp_path / "b")
    negative = _generate(tmp_path / "c", "--negative-prompt", "a dog")
    a = _pixels(tmp_path / "a" / first[0])
    np.testing.assert_array_equal(a, _pixels(tmp_path / "b" / second[0]))
    assert not np.array_equal(a, _pixels(tmp_path / "c" / negative[0]))


def test_never_overwrites_earlier_images(tmp_path):
    _generate(tmp_path)
    assert _generate(tmp_path) == ["00000-7.png", "00001-7.png"]


def test_bad_size_is_a_message_not_a_traceback(tmp_path, capsys):
    assert main(["generate", "--prompt", "x", "--size", "big", "--out", str(tmp_path)]) == 2
    assert "--size must be N or WIDTHxHEIGHT" in capsys.readouterr().err.replace("`", "")


def test_help_lists_subcommands():
    result = subprocess.run([sys.executable, "-m", "studio", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0
    assert "generate" in result.stdout


def test_offline_sd_v1_says_how_to_provide_files(tmp_path):
    # An unreachable proxy makes every download fail, as on an offline machine.
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras"),
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9")
    result = subprocess.run(
        [sys.executable, "-m", "studio", "generate", "--model", "sd-v1",
         "--prompt", "a cat", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for expected in ("kcv_encoder.h5", "kcv_diffusion_model.h5", "vae_encoder.h5",
                     "kcv_decoder.h5", "--weights DIR", "bpe_simple_vocab_16e6.txt.gz"):
        assert expected in result.stderr
    assert not os.path.exists(tmp_path / "out")


def test_embeddings_and_lora_files_load_into_generation(tmp_path, capsys):
    """An embedding's token changes the image; a LoRA at scale 0 is the base model."""
    from studio.embeddings import TextualInversionEmbedding, save_embedding
    from studio.models import StableDiffusionBackbone
    from studio.lora.lora_targets import unet_lora_targets
    from studio.lora.lora_weights import LoRAWeights

    rng = np.random.default_rng(0)
    embedding = tmp_path / "thing.safetensors"
    save_embedding(TextualInversionEmbedding(
        {"<thing>": rng.normal(size=(2, 32)).astype("float32") * 3}), embedding)
    # A LoRA on one UNet projection, in kohya's layout (down (rank, in), up (out, rank)).
    layer = unet_lora_targets(StableDiffusionBackbone.from_preset("tiny").unet)[
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"]
    in_features, out_features = layer.kernel.shape
    lora = tmp_path / "subject.safetensors"
    LoRAWeights({"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": (
        rng.normal(size=(2, in_features)).astype("float32"),
        rng.normal(size=(out_features, 2)).astype("float32") * 5, 2.0)}).save(lora)

    def image(out, prompt, *extra):
        assert main(["generate", "--model", "tiny", "--prompt", prompt, "--steps", "3",
                     "--seed", "7", "--out", str(tmp_path / out), *extra]) == 0
        return _pixels(tmp_path / out / "00000-7.png").astype(int)

    base = image("base", "a photo of <thing>")
    with_embedding = image("embedding", "a photo of <thing>", "--embedding", str(embedding))
    assert np.abs(with_embedding - base).max() > 0
    cat = image("cat", "a photo of a cat")
    assert np.array_equal(image("cat-embedding", "a photo of a cat", "--embedding",
                                str(embedding)), cat)
    assert np.abs(image("lora", "a photo of a cat", "--lora", str(lora)) - cat).max() > 0
    assert np.array_equal(image("lora0", "a photo of a cat", "--lora", str(lora),
                                "--lora-scale", "0"), cat)


def test_embedding_of_another_width_is_a_message(tmp_path, capsys):
    from studio.embeddings import TextualInversionEmbedding, save_embedding

    wide = tmp_path / "wide.safetensors"
    save_embedding(TextualInversionEmbedding({"<wide>": np.ones((1, 768), "float32")}), wide)
    assert main(["generate", "--model", "tiny", "--prompt", "x", "--steps", "1",
                 "--embedding", str(wide), "--out", str(tmp_path / "out")]) == 2
    assert "768 (SD 1.x, CLIP ViT-L/14) wide" in capsys.readouterr().err
