"""`studio generate --init-image ... --mask ...`: inpainting from the command line."""

import numpy as np
import pytest
from PIL import Image

from studio.cli.main import main
from studio.images import read_parameters


def _files(tmp_path):
    rng = np.random.default_rng(0)
    init = tmp_path / "init.png"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(init)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    return str(init), str(mask_path)


@pytest.mark.large  # about 15 s of CPU: two model loads and compiled loops
def test_inpainting_with_an_embedding_and_a_lora(tmp_path):
    from studio.embeddings import TextualInversionEmbedding, save_embedding
    from studio.lora.lora_targets import unet_lora_targets
    from studio.lora.lora_weights import LoRAWeights
    from studio.models import StableDiffusionBackbone

    init, mask = _files(tmp_path)
    rng = np.random.default_rng(1)
    embedding = tmp_path / "thing.safetensors"
    save_embedding(TextualInversionEmbedding(
        {"<thing>": rng.normal(size=(2, 32)).astype("float32") * 3}), embedding)
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    layer = unet_lora_targets(StableDiffusionBackbone.from_preset("tiny").unet)[name]
    in_features, out_features = layer.kernel.shape
    lora = tmp_path / "subject.safetensors"
    LoRAWeights({"lora_unet_" + name.replace(".", "_"): (
        rng.normal(size=(2, in_features)).astype("float32"),
        rng.normal(size=(out_features, 2)).astype("float32") * 5, 2.0)}).save(lora)

    def image(out, *extra):
        argv = ["generate", "--model", "tiny", "--prompt", "a photo of <thing>", "--steps", "3",
                "--seed", "7", "--init-image", init, "--mask", mask, "--mask-blur", "2",
                "--mask-padding", "1", "--out", str(tmp_path / out), *extra]
        assert main(argv) == 0
        path = tmp_path / out / "00000-7.png"
        return np.asarray(Image.open(path)).astype(int), read_parameters(path)

    base, parameters = image("base")
    assert base.shape == (64, 64, 3)
    assert parameters.extra["Mask blur"] == "2.0" and parameters.extra["Mask padding"] == "1"
    with_both, _ = image("both", "--embedding", str(embedding), "--lora", str(lora))
    assert np.abs(with_both - base).max() > 0


def test_mask_errors_are_one_line(tmp_path, capsys):
    init, mask = _files(tmp_path)
    out = str(tmp_path / "out")
    assert main(["generate", "--prompt", "x", "--mask", mask, "--out", out]) == 2
    assert "--init-image" in capsys.readouterr().err
    small = tmp_path / "small.png"
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(small)
    assert main(["generate", "--model", "tiny", "--prompt", "x", "--steps", "1",
                 "--init-image", init, "--mask", str(small), "--out", out]) == 2
    assert "init image's size" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["generate", "--model", "tiny", "--prompt", "x", "--init-image", init,
                 "--mask", str(broken), "--out", out]) == 2
    assert "Cannot read the mask image" in capsys.readouterr().err
