"""Issue 21, acceptance 3: `studio generate --from-png` makes an image again, LoRA and embedding included.

An image made with an embedding and a LoRA names both in its infotext as
AUTOMATIC1111 does (`<lora:NAME:STRENGTH>`, `Lora hashes`, `TI hashes`);
`--from-png` finds the files by name and hash and makes the same pixels.
An A1111 infotext written by hand in A1111's layout reads into the same
settings. What cannot be made again is one line, exit 2.
"""

import dataclasses
import hashlib
import os
import shutil
import struct

import numpy as np
import pytest
from PIL import Image

from studio.cli.main import main
from studio.errors import InvalidInputError
from studio.images import GenerationParameters, read_parameters, save_png

MODEL = "tiny-shapes"
PROMPT = "a red <thing>"
BASE = ("--model", MODEL, "--steps", "2", "--seed", "3", "--size", "32")


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def concepts(tmp_path_factory):
    """A folder holding `thing.safetensors` (an embedding) and `subject.safetensors` (a LoRA)."""
    from studio.embeddings import TextualInversionEmbedding, save_embedding
    from studio.lora.lora_weights import LoRAWeights
    from studio.models import BACKBONE_PRESETS

    folder = tmp_path_factory.mktemp("concepts")
    rng = np.random.default_rng(0)
    preset = BACKBONE_PRESETS[MODEL]
    width = preset["text_encoder"]["config"]["hidden_dim"]
    save_embedding(TextualInversionEmbedding(
        {"<thing>": rng.normal(size=(2, width)).astype("float32") * 3}),
        folder / "thing.safetensors")
    # The first block's cross-attention key: the text's width in, the block's channels out.
    in_features = preset["unet"]["config"]["context_dim"]
    out_features = preset["unet"]["config"]["block_channels"][0]
    LoRAWeights({"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": (
        rng.normal(size=(2, in_features)).astype("float32"),
        rng.normal(size=(out_features, 2)).astype("float32") * 5, 2.0)}).save(
            folder / "subject.safetensors")
    return folder


def _expected_hashes(folder):
    """A1111's short hashes, computed here from the bytes: a LoRA's tensor data, an embedding's file."""
    lora = (folder / "subject.safetensors").read_bytes()
    (header_length,) = struct.unpack("<Q", lora[:8])
    return (_sha256(lora[8 + header_length:])[:12],
            _sha256((folder / "thing.safetensors").read_bytes())[:12])


def _only_png(folder):
    (name,) = [name for name in os.listdir(folder) if name.endswith(".png")]
    return folder / name


def _settings(concepts):
    """The settings of the test's generation: an embedding, and a LoRA at 0.7."""
    from studio.pipelines import GenerationSettings

    return GenerationSettings(
        PROMPT, negative_prompt="blurry", steps=2, sampler="ddim", guidance_scale=7.5, seed=3,
        width=32, height=32, model=MODEL, loras=[(str(concepts / "subject.safetensors"), 0.7)],
        embeddings=[str(concepts / "thing.safetensors")])


def _a1111_infotext(lora_hash, embedding_hash):
    """The test's generation as A1111 writes it, by hand from its documented layout."""
    return (
        f"{PROMPT} <lora:subject:0.7>\n"
        "Negative prompt: blurry\n"
        "Steps: 2, Sampler: DDIM, CFG scale: 7.5, Seed: 3, Size: 32x32, "
        f"Model hash: 0123456789, Model: {MODEL}, "
        f'Lora hashes: "subject: {lora_hash}", TI hashes: "thing: {embedding_hash}", '
        "Version: v1.10.1"
    )


@pytest.mark.large
def test_from_png_makes_the_same_pixels(tmp_path, concepts, tiny_shapes_pipeline):
    """Two model loads (about 30 s on a busy 2-core machine): large."""
    assert main(["generate", *BASE, "--prompt", PROMPT, "--negative-prompt", "blurry",
                 "--embedding", str(concepts / "thing.safetensors"),
                 "--lora", str(concepts / "subject.safetensors"), "--lora-scale", "0.7",
                 "--out", str(tmp_path / "first")]) == 0
    original = _only_png(tmp_path / "first")
    lora_hash, embedding_hash = _expected_hashes(concepts)
    text = Image.open(original).text["parameters"]
    assert text.split("\n")[0] == f"{PROMPT} <lora:subject:0.7>"
    assert f'Lora hashes: "subject: {lora_hash}"' in text
    assert f'TI hashes: "thing: {embedding_hash}"' in text

    # Made again from the image alone, the files found by name and hash in a folder.
    assert main(["generate", "--from-png", str(original), "--concepts-dir", str(concepts),
                 "--out", str(tmp_path / "again")]) == 0
    again = _only_png(tmp_path / "again")
    np.testing.assert_array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(original)))
    assert read_parameters(again) == read_parameters(original)

    # Without the LoRA and the embedding the image is another one: they were applied.
    plain = tiny_shapes_pipeline(PROMPT, negative_prompt="blurry", num_steps=2, seed=3,
                                 height=32, width=32).images[0]
    assert not np.array_equal(plain, np.asarray(Image.open(original)))


class _StandInPipeline:
    """Records nothing, draws nothing: the parameters a pipeline returns, without a model."""

    def __call__(self, prompt, negative_prompt="", num_steps=1, guidance_scale=7.5, seed=None,
                 height=None, width=None, sampler="ddim", **_):
        from studio.pipelines import GeneratedImages
        from studio.schedulers.scheduler_registry import SAMPLERS

        parameters = GenerationParameters(prompt, negative_prompt, num_steps,
                                          SAMPLERS[sampler][2], guidance_scale, seed, width,
                                          height, MODEL)
        return GeneratedImages(np.zeros((1, height, width, 3), np.uint8), [parameters])


def test_our_infotext_and_a1111s_read_into_the_settings_they_were_made_with(
        tmp_path, concepts, monkeypatch):
    """The runner names the files (name, strength, A1111's short hash); both layouts read back."""
    from studio.pipelines import GenerationRunner, settings_from_parameters

    monkeypatch.setattr(GenerationRunner, "pipeline", lambda self, settings: _StandInPipeline())
    settings = _settings(concepts)
    result = GenerationRunner().run(settings)
    save_png(result.images[0], tmp_path / "ours.png", result.parameters[0])
    lora_hash, embedding_hash = _expected_hashes(concepts)
    text = Image.open(tmp_path / "ours.png").text["parameters"]
    assert text.split("\n")[0] == f"{PROMPT} <lora:subject:0.7>"
    assert f'Lora hashes: "subject: {lora_hash}"' in text
    assert f'TI hashes: "thing: {embedding_hash}"' in text

    # Files are found by name and hash below a folder (here: copies elsewhere).
    found = tmp_path / "library" / "nested"
    shutil.copytree(concepts, found)
    ours, notes = settings_from_parameters(read_parameters(tmp_path / "ours.png"),
                                           search_folders=[tmp_path / "library"])
    theirs, their_notes = settings_from_parameters(
        GenerationParameters.from_infotext(_a1111_infotext(lora_hash, embedding_hash)),
        search_folders=[tmp_path / "library"])
    expected = dataclasses.replace(
        settings, loras=[(str(found / "subject.safetensors"), 0.7)],
        embeddings=[str(found / "thing.safetensors")])
    assert ours == expected and notes == []
    assert theirs == expected
    assert any("v1.10.1" in note and "NumPy" in note for note in their_notes)


def test_options_replace_what_the_image_says(tmp_path, concepts):
    from studio.pipelines import settings_from_parameters

    parameters = GenerationParameters.from_infotext(
        "a blue <thing> <lora:subject:0.5>\nSteps: 20, Sampler: Euler a, CFG scale: 5, "
        f"Seed: 9, Size: 32x32, Model: {MODEL}")
    settings, _ = settings_from_parameters(
        parameters, overrides={"steps": 2, "sampler": "ddim", "seed": 4},
        lora_files=[str(concepts / "subject.safetensors")],
        embedding_files=[str(concepts / "thing.safetensors")])
    assert (settings.steps, settings.sampler, settings.seed, settings.guidance_scale) == (
        2, "ddim", 4, 5.0)
    # Given files are found by their names; an embedding the image names nowhere is added.
    assert settings.loras == ((str(concepts / "subject.safetensors"), 0.5),)
    assert settings.embeddings == (str(concepts / "thing.safetensors"),)


def test_dpm_karras_as_a1111_1_9_writes_it(concepts):
    from studio.pipelines import settings_from_parameters

    parameters = GenerationParameters.from_infotext(
        "a cat\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, "
        f"Seed: 1, Size: 32x32, Model: {MODEL}")
    assert settings_from_parameters(parameters)[0].sampler == "dpmpp_2m_karras"


def test_a_model_named_in_the_image_is_found_by_name_and_hash(tmp_path):
    from studio.pipelines import settings_from_parameters

    library = tmp_path / "models"
    (library / "folders" / "my-diffusers").mkdir(parents=True)
    checkpoint = library / "files" / "my-checkpoint.safetensors"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"not really weights")
    short_hash = hashlib.sha256(b"not really weights").hexdigest()[:10]

    def model(name, model_hash=None):
        line = f"Model: {name}" + (f", Model hash: {model_hash}" if model_hash else "")
        parameters = GenerationParameters.from_infotext(
            f"a cat\nSteps: 2, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: 32x32, {line}")
        return settings_from_parameters(parameters, search_folders=[library])[0].model

    assert model("my-diffusers") == str(library / "folders" / "my-diffusers")
    assert model("my-checkpoint", short_hash) == str(checkpoint)
    with pytest.raises(InvalidInputError, match="'my-checkpoint' .Model hash 0000000000.*--model"):
        model("my-checkpoint", "0000000000")
    assert model(MODEL) == MODEL


def _write_a1111_png(path, parameter_line, prompt="a red <thing>"):
    save_png(np.zeros((32, 32, 3), np.uint8), path,
             f"{prompt}\nSteps: 2, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: 32x32, "
             f"Model: {MODEL}, {parameter_line}")
    return path


@pytest.mark.parametrize("parameter_line, prompt, expected", [
    ("Version: v1.9.4", "a cat <lora:missing:0.8>", ["LoRA 'missing'", "--concepts-dir"]),
    ('TI hashes: "thing: 000000000000"', "a red <thing>",
     ["embedding 'thing' with hash 000000000000", "thing.safetensors has another hash"]),
    ("Hires upscale: 2, Hires steps: 10, Denoising strength: 0.5", "a cat",
     ["hires fix"]),
    ("Denoising strength: 0.5", "a cat", ["a start image", "--init-image"]),
    ("Clip skip: 2", "a cat", ["CLIP skip"]),
    ("Version: v1.9.4", "a cat <hypernet:foo:1>", ["<hypernet:foo:1>"]),
])
def test_what_cannot_be_made_again_is_one_line(tmp_path, capsys, concepts, parameter_line,
                                               prompt, expected):
    image = _write_a1111_png(tmp_path / "a1111.png", parameter_line, prompt)
    assert main(["generate", "--from-png", str(image), "--concepts-dir", str(concepts),
                 "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "cannot be made again" in error and "Traceback" not in error
    for part in expected:
        assert part in error
    assert not (tmp_path / "out").exists()


def test_unknown_sampler_and_model_name_the_fix(tmp_path, capsys):
    image = tmp_path / "a1111.png"
    save_png(np.zeros((32, 32, 3), np.uint8), image,
             "a cat\nSteps: 20, Sampler: UniPC, CFG scale: 7, Seed: 1, Size: 512x512, "
             "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly")
    assert main(["generate", "--from-png", str(image), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "'UniPC'" in error and "--sampler" in error
    assert "'v1-5-pruned-emaonly' (Model hash 6ce0161689)" in error and "--model" in error


def test_an_image_without_parameters_is_a_message(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    assert main(["generate", "--from-png", str(tmp_path / "plain.png"),
                 "--out", str(tmp_path / "out")]) == 2
    assert "carries no generation parameters" in capsys.readouterr().err


def test_a_prompt_or_an_image_is_needed(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path / "out")]) == 2
    assert "--prompt TEXT" in capsys.readouterr().err


def test_a1111_short_hashes(tmp_path, concepts):
    """A LoRA's hash skips its header, so new metadata keeps it; an embedding's is the file's."""
    from studio.interop.a1111_hashes import (
        checkpoint_short_hash, embedding_short_hash, lora_short_hash)
    from studio.lora.lora_weights import LoRAWeights

    lora_hash, embedding_hash = _expected_hashes(concepts)
    assert lora_short_hash(concepts / "subject.safetensors") == lora_hash
    assert embedding_short_hash(concepts / "thing.safetensors") == embedding_hash
    renamed = LoRAWeights.load(concepts / "subject.safetensors")
    renamed.metadata["ss_output_name"] = "another name"
    renamed.save(tmp_path / "other.safetensors")
    assert lora_short_hash(tmp_path / "other.safetensors") == lora_hash
    assert embedding_short_hash(tmp_path / "other.safetensors") != lora_hash
    shutil.copy(concepts / "thing.safetensors", tmp_path / "thing.pt")
    assert checkpoint_short_hash(tmp_path / "thing.pt") == embedding_hash[:10]
