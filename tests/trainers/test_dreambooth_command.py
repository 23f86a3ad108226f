"""Tests of `studio train dreambooth` and its class images, on the tiny preset."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from studio.cli.main import run_command as studio
from studio.cli.dreambooth_command import EXIT_OK

pytestmark = pytest.mark.tensorflow_only

IMAGE_SIZE = 64
INSTANCE_PROMPT = "a photo of sks toy"
CLASS_PROMPT = "a photo of a toy"



@pytest.fixture(scope="module", autouse=True)
def quick_steps(eager_compile, eager_tensorflow_functions):
    """Runs the command's train steps and class-image generation eagerly: tracing
    costs more than these steps."""
    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer

    with pytest.MonkeyPatch.context() as patch, eager_tensorflow_functions():
        eager_compile(patch, DreamBoothTrainer)
        yield


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, write_toy_images):
    root = tmp_path_factory.mktemp("dreambooth")
    write_toy_images(root / "subject", 2, IMAGE_SIZE, prefix="subject")
    return root


def options(workspace, out):
    return ["train", "dreambooth", "--out", str(workspace / out),
            "--cache-dir", str(workspace / "cache")]


@pytest.fixture(scope="module")
def lora_run(workspace):
    code = studio(
        *options(workspace, "lora"),
        "--model", "tiny", "--data", str(workspace / "subject"),
        "--instance-prompt", INSTANCE_PROMPT, "--class-prompt", CLASS_PROMPT,
        "--num-class-images", "3", "--class-image-steps", "2", "--lora-rank", "2",
        "--steps", "2", "--save-every", "1", "--latent-variants", "1", "--log-every", "1",
    )
    return code, workspace / "lora"


def test_lora_run_generates_class_images_and_writes_a_lora_file(lora_run):
    from studio.images import read_parameters
    from studio.lora.lora_weights import LoRAWeights

    code, run = lora_run
    assert code == EXIT_OK
    class_images = sorted(os.listdir(run / "class_images"))
    assert class_images == ["class-00000.png", "class-00001.png", "class-00002.png"]
    parameters = read_parameters(run / "class_images" / class_images[2])
    assert (parameters.prompt, parameters.seed, parameters.steps) == (CLASS_PROMPT, 2, 2)
    lora = LoRAWeights.load(run / "lora.safetensors")
    assert lora.ranks == [2] and lora.modules
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert np.isfinite(summary["final_loss"])
    config = json.loads((run / "config.json").read_text())
    assert config["class_data"] == str(run / "class_images")
    assert sorted(os.listdir(run / "checkpoints")) == ["step-000001", "step-000002"]


def test_resume_continues_without_regenerating_class_images(lora_run, workspace, capsys):
    from studio.lora.lora_weights import LoRAWeights

    _, run = lora_run
    before = LoRAWeights.load(run / "lora.safetensors").modules
    stamps = {name: os.stat(run / "class_images" / name).st_mtime_ns
              for name in os.listdir(run / "class_images")}
    code = studio(*options(workspace, "lora"), "--resume", "--steps", "3")
    assert code == EXIT_OK
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["resumed_from_step"] == 2
    after = LoRAWeights.load(run / "lora.safetensors").modules
    assert any(not np.array_equal(after[key][1], before[key][1]) for key in before)
    assert stamps == {name: os.stat(run / "class_images" / name).st_mtime_ns
                      for name in os.listdir(run / "class_images")}
    assert "Trained 3 steps" in capsys.readouterr().out


def test_full_run_saves_a_model_folder_that_generate_loads(workspace, tmp_path):
    from studio.cli.main import main

    code = studio(
        *options(workspace, "full"),
        "--model", "tiny", "--data", str(workspace / "subject"),
        "--instance-prompt", INSTANCE_PROMPT, "--steps", "1", "--latent-variants", "0",
        "--optimizer", "adafactor",
    )
    run = workspace / "full"
    assert code == EXIT_OK
    assert os.path.isfile(run / "unet.weights.h5")
    assert not os.path.exists(run / "class_images")
    out = tmp_path / "images"
    assert main(["generate", "--model", str(run / "model"), "--prompt", INSTANCE_PROMPT,
                 "--steps", "2", "--seed", "3", "--out", str(out)]) == 0
    assert len(os.listdir(out)) == 1


def test_class_images_top_up_a_folder_and_keep_what_is_there(tmp_path):
    """Images already there count, whoever made them; taken numbers are skipped."""
    from studio.images import read_parameters
    from studio.models import StableDiffusionBackbone
    from studio.pipelines import TextToImagePipeline
    from studio.trainers.dreambooth.dreambooth_class_images import generate_class_images

    folder = tmp_path / "class"
    folder.mkdir()
    Image.new("RGB", (8, 8), "red").save(folder / "my photo.JPG")
    Image.new("RGB", (8, 8), "blue").save(folder / "class-00001.png")
    pipeline = TextToImagePipeline(StableDiffusionBackbone.from_preset("tiny"))
    made = generate_class_images(pipeline, folder, CLASS_PROMPT, 4, seed=10, num_steps=2,
                                 guidance_scale=3.0, progress=False)
    assert sorted(os.path.basename(p) for p in made) == ["class-00000.png", "class-00002.png"]
    assert read_parameters(folder / "class-00002.png").seed == 12
    assert read_parameters(folder / "class-00002.png").guidance_scale == 3.0
    assert np.array_equal(np.asarray(Image.open(folder / "class-00001.png")),
                          np.asarray(Image.new("RGB", (8, 8), "blue")))
    assert generate_class_images(pipeline, folder, CLASS_PROMPT, 4, progress=False) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--class-data", "x"], "--class-data needs --class-prompt"),
        (["--lora-alpha", "4"], "need --lora-rank"),
        (["--lora-rank", "0"], "--lora-rank must be at least 1"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--class-prompt", "a dog", "--class-image-guidance", "-1"],
         r"--class-image-guidance must be >= 0. Received: -1"),
    ],
)
def test_bad_options_are_named(tmp_path, argv, message):
    with pytest.raises(ValueError, match=message):
        studio("train", "dreambooth", "--model", "tiny", "--data", "x",
               "--instance-prompt", INSTANCE_PROMPT, "--out", str(tmp_path / "run"), *argv)


def test_an_existing_run_needs_resume(lora_run, workspace):
    with pytest.raises(ValueError, match="--resume"):
        studio(*options(workspace, "lora"), "--model", "tiny", "--data", "x",
               "--instance-prompt", INSTANCE_PROMPT)
