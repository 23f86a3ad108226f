import os

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from studio.images import ConceptReference, GenerationParameters, read_parameters, save_png


def _parameters(**overrides):
    values = dict(
        prompt="a photo of a <cat-toy>, on a beach",
        negative_prompt="blurry, low quality",
        steps=20,
        sampler="Euler a",
        guidance_scale=7.5,
        seed=1234,
        width=64,
        height=32,
        model="tiny",
    )
    values.update(overrides)
    return GenerationParameters(**values)


def test_infotext_has_a1111_layout():
    text = _parameters().to_infotext()
    assert text.split("\n") == [
        "a photo of a <cat-toy>, on a beach",
        "Negative prompt: blurry, low quality",
        "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1234, "
        "Size: 64x32, Model: tiny",
    ]


def test_infotext_round_trip_with_awkward_values():
    parameters = _parameters(
        prompt='line one\nline "two", with comma',
        negative_prompt="",
        model="/models/my, model",
        guidance_scale=7.0,
        extra={"Denoising strength": "0.75"},
    )
    text = parameters.to_infotext()
    assert "Negative prompt:" not in text
    assert "CFG scale: 7," in text
    assert GenerationParameters.from_infotext(text) == parameters


def test_reads_a1111_written_text():
    text = (
        "masterpiece, a cat\nNegative prompt: ugly\n"
        'Steps: 30, Sampler: DPM++ 2M, CFG scale: 6, Seed: 7, Size: 512x768, '
        'Model hash: abc123, Model: v1-5, Lora hashes: "a: 1, b: 2"'
    )
    parameters = GenerationParameters.from_infotext(text)
    assert parameters.prompt == "masterpiece, a cat"
    assert parameters.negative_prompt == "ugly"
    assert (parameters.steps, parameters.sampler, parameters.seed) == (30, "DPM++ 2M", 7)
    assert (parameters.width, parameters.height) == (512, 768)
    assert parameters.extra == {"Model hash": "abc123"}
    # Listed in `Lora hashes` without a tag in the prompt: strength 1.
    assert parameters.loras == (ConceptReference("a", "1"), ConceptReference("b", "2"))


def test_rejects_text_without_parameter_line():
    with pytest.raises(ValueError, match="Received"):
        GenerationParameters.from_infotext("just a prompt")


def test_png_round_trip(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    parameters = _parameters(prompt="ein Foto von einer Katze 猫")
    path = save_png(image, str(tmp_path / "out" / "image.png"), parameters)
    assert read_parameters(path) == parameters
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    assert os.listdir(tmp_path / "out") == ["image.png"]  # no temp file left


def test_reads_latin1_text_chunk_written_by_others(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", _parameters().to_infotext())
    path = tmp_path / "a1111.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    assert read_parameters(path) == _parameters()


def test_png_without_parameters(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    assert read_parameters(path) is None


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        save_png(np.zeros((8, 8, 3), np.float32), str(tmp_path / "x.png"))
    assert list(tmp_path.iterdir()) == []
