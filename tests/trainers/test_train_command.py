"""Tests of `studio train textual-inversion` on the tiny preset (tf.data pipelines)."""

import json
import os

import numpy as np
import pytest

from studio.cli import train_command
from studio.cli.main import run_command as studio

pytestmark = pytest.mark.tensorflow_only

TOKEN = "<toy>"
IMAGE_SIZE = 64



@pytest.fixture(scope="module", autouse=True)
def quick_steps(eager_compile, eager_tensorflow_functions):
    """Runs the command's train steps and samples eagerly: tracing costs more than these steps."""
    from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer

    with pytest.MonkeyPatch.context() as patch, eager_tensorflow_functions():
        eager_compile(patch, TextualInversionTrainer)
        yield


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, write_toy_images):
    root = tmp_path_factory.mktemp("train")
    images = write_toy_images(root / "images", 3, IMAGE_SIZE)
    (images / "toy0.txt").write_text("a photo of {} on grass\n", encoding="utf-8")
    return root


def base_options(workspace):
    return [
        "train", "textual-inversion", "--out", str(workspace / "run"),
        "--cache-dir", str(workspace / "cache"),
    ]


@pytest.fixture(scope="module")
def first_run(workspace):
    code = studio(
        *base_options(workspace),
        "--model", "tiny", "--data", str(workspace / "images"), "--token", TOKEN,
        "--init-word", "toy", "--num-vectors", "2", "--steps", "2", "--save-every", "1",
        "--sample-every", "2", "--sample-steps", "2", "--latent-variants", "2",
        "--log-every", "1", "--lr", "0.01",
    )
    return code, workspace / "run"


def test_training_writes_a_complete_run_directory(first_run):
    from studio.embeddings import load_embedding
    from studio.images import read_parameters

    code, run = first_run
    assert code == train_command.EXIT_OK
    config = json.loads((run / "config.json").read_text())
    assert (config["token"], config["init_word"], config["num_vectors"]) == (TOKEN, "toy", 2)
    assert sorted(os.listdir(run / "checkpoints")) == ["step-000001", "step-000002"]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run / "logs"))
    samples = sorted(os.listdir(run / "samples"))
    assert samples == ["step-000002-0.png", "step-000002-1.png"]
    assert read_parameters(run / "samples" / samples[0]).prompt == f"a photo of a {TOKEN}"
    embedding = load_embedding(run / "embedding.safetensors")
    assert embedding.vectors[TOKEN].shape == (2, 32)
    assert embedding.steps == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert summary["precision"] == "float32" and summary["weights_dtype"] == "float32"
    assert np.isfinite(summary["final_loss"])


def test_resume_continues_from_the_last_checkpoint(first_run, workspace, capsys):
    from studio.embeddings import load_embedding

    _, run = first_run
    before = load_embedding(run / "embedding.safetensors").vectors[TOKEN]
    code = studio(*base_options(workspace), "--resume", "--steps", "3", "--sample-every", "0")
    assert code == train_command.EXIT_OK
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["resumed_from_step"] == 2
    assert "step-000003" in os.listdir(run / "checkpoints")
    after = load_embedding(run / "embedding.safetensors")
    assert after.steps == 3 and not np.array_equal(after.vectors[TOKEN], before)
    assert "Trained 3 steps" in capsys.readouterr().out


def test_resume_refuses_to_change_what_defines_the_run(first_run, workspace):
    with pytest.raises(ValueError, match="--token '<other>'"):
        studio(*base_options(workspace), "--resume", "--token", "<other>")


def test_an_existing_run_needs_resume(first_run, workspace):
    with pytest.raises(ValueError, match="--resume"):
        studio(*base_options(workspace), "--model", "tiny", "--data", "x", "--token", TOKEN,
               "--init-word", "toy")


def test_missing_options_are_named(tmp_path):
    with pytest.raises(ValueError, match="--data, --init-word"):
        studio("train", "textual-inversion", "--model", "tiny", "--token", TOKEN,
               "--out", str(tmp_path / "run"))


def test_resume_of_a_folder_without_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="no training run"):
        studio("train", "textual-inversion", "--out", str(tmp_path), "--resume")


def test_train_without_method_prints_help(capsys):
    assert studio("train") == train_command.EXIT_USAGE
    assert "textual-inversion" in capsys.readouterr().out


def test_mixed_precision_stores_the_frozen_networks_in_half(workspace, monkeypatch):
    """Nothing of the networks trains, so no float32 copy of their weights is kept."""
    from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer

    built = []
    original = TextualInversionTrainer.__init__

    def init(self, backbone, *args, **kwargs):
        built.append(backbone)
        original(self, backbone, *args, **kwargs)

    monkeypatch.setattr(TextualInversionTrainer, "__init__", init)
    code = studio(
        "train", "textual-inversion", "--out", str(workspace / "bf16"),
        "--cache-dir", str(workspace / "cache"), "--model", "tiny",
        "--data", str(workspace / "images"), "--token", "<half>", "--init-word", "toy",
        "--steps", "1", "--latent-variants", "0", "--sample-every", "1",
        "--sample-steps", "2", "--precision", "mixed_bfloat16",
    )
    assert code == 0
    summary = json.loads((workspace / "bf16" / "summary.json").read_text())
    assert summary["precision"] == "mixed_bfloat16"
    assert summary["weights_dtype"] == "bfloat16"
    # The sample images come from the half-precision networks too.
    assert sorted(os.listdir(workspace / "bf16" / "samples"))[0] == "step-000001-0.png"
    (backbone,) = built
    for network in (backbone.text_encoder, backbone.unet, backbone.vae_encoder):
        assert {weight.dtype for weight in network.weights} == {"bfloat16"}


def test_non_finite_loss_exits_with_its_message(workspace, monkeypatch, capsys):
    from studio.trainers.run.non_finite_loss_error import NonFiniteLossError
    from studio.trainers.run.training_run import TrainingRun

    def diverge(self, batches, resume=False, callbacks=None):
        raise NonFiniteLossError(step=7, checkpoint="ckpt/step-000005", consecutive=1)

    monkeypatch.setattr(TrainingRun, "fit", diverge)
    code = studio(
        "train", "textual-inversion", "--out", str(workspace / "diverging"),
        "--cache-dir", str(workspace / "cache"), "--model", "tiny",
        "--data", str(workspace / "images"), "--token", "<nan>", "--init-word", "toy",
        "--latent-variants", "0",
    )
    assert code == train_command.EXIT_NON_FINITE
    assert "step 7" in capsys.readouterr().err


def test_a_run_recorded_without_its_method_still_resumes(first_run, workspace):
    """Runs written before `config.json` recorded the method resume as before, and get it."""
    _, run = first_run
    config = json.loads((run / "config.json").read_text())
    assert config.pop("method") == "textual_inversion"
    (run / "config.json").write_text(json.dumps(config))
    steps = json.loads((run / "summary.json").read_text())["steps"]
    code = studio(*base_options(workspace), "--resume", "--steps", str(steps + 1),
                  "--sample-every", "0")
    assert code == train_command.EXIT_OK
    assert json.loads((run / "summary.json").read_text())["steps"] == steps + 1
    assert json.loads((run / "config.json").read_text())["method"] == "textual_inversion"
