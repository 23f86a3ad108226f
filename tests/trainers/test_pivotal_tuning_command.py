"""`studio train dreambooth --token ...`: pivotal tuning from the command line (on `tiny`, SD 1.x)."""

import json
import os

import numpy as np
import pytest

from studio.cli.dreambooth_command import EXIT_OK
from studio.cli.main import run_command as studio

pytestmark = pytest.mark.tensorflow_only

TOKEN = "<cross>"
INSTANCE_PROMPT = f"a photo of {TOKEN}"



@pytest.fixture(scope="module", autouse=True)
def quick_steps(eager_compile):
    """Runs the command's train steps eagerly: tracing costs more than these steps."""
    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer

    with pytest.MonkeyPatch.context() as patch:
        eager_compile(patch, DreamBoothTrainer)
        yield


# About 16-20 s (the CLI's data pipeline, latent cache and fit on top of the
# steps); the trainer's behaviour is tested in the default run
# (test_two_encoder_pivotal_tuning.py), this wiring also by the SD-XL learning test.
@pytest.mark.large
def test_a_pivotal_run_writes_the_embedding_and_the_lora_that_names_it(
        tmp_path, write_toy_images):
    from studio.embeddings import load_embedding
    from studio.lora.lora_weights import LoRAWeights

    write_toy_images(tmp_path / "subject", 2, 64, prefix="subject")
    run = tmp_path / "run"
    code = studio(
        "train", "dreambooth", "--model", "tiny", "--data", str(tmp_path / "subject"),
        "--out", str(run), "--cache-dir", str(tmp_path / "cache"),
        "--instance-prompt", INSTANCE_PROMPT, "--class-prompt", "a photo of a toy",
        "--num-class-images", "1", "--class-image-steps", "1",
        "--lora-rank", "2", "--token", TOKEN, "--init-word", "toy", "--ti-fraction", "0.5",
        "--steps", "2", "--save-every", "1", "--latent-variants", "1", "--lr", "1e-2",
    )
    assert code == EXIT_OK
    embedding = load_embedding(run / "embedding.safetensors")
    assert embedding.placeholders == [TOKEN] and embedding.steps == 2
    assert embedding.initializer == "toy"
    lora = LoRAWeights.load(run / "lora.safetensors")
    assert lora.metadata["studio_method"] == "pivotal_tuning"
    assert lora.metadata["studio_embedding_file"] == "embedding.safetensors"
    assert lora.metadata["studio_placeholder"] == TOKEN
    assert any(np.abs(up).max() > 0 for _, up, _ in lora.modules.values())
    # Each checkpoint holds both files too.
    for step in ("step-000001", "step-000002"):
        assert {"embedding.safetensors", "lora.safetensors"} <= set(
            os.listdir(run / "checkpoints" / step))
    # One step of the rows (half of 2), then they held: step 1's file equals step 2's.
    first = load_embedding(run / "checkpoints" / "step-000001" / "embedding.safetensors")
    np.testing.assert_array_equal(first.vectors[TOKEN], embedding.vectors[TOKEN])
    config = json.loads((run / "config.json").read_text())
    assert (config["token"], config["init_word"], config["ti_fraction"]) == (TOKEN, "toy", 0.5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--token", TOKEN, "--init-word", "toy"], "Pivotal tuning .* add --lora-rank"),
        (["--token", TOKEN, "--init-word", "toy", "--lora-rank", "2", "--train-text-encoder"],
         "leave out --train-text-encoder"),
        (["--token", TOKEN, "--lora-rank", "2"], "--token needs --init-word"),
        (["--init-word", "toy", "--lora-rank", "2"], "--init-word .* add --token"),
        (["--token", TOKEN, "--init-word", "toy", "--lora-rank", "2", "--ti-fraction", "1.5"],
         "--ti-fraction must be between 0 and 1"),
        (["--token", "<dog>", "--init-word", "toy", "--lora-rank", "2"],
         "--instance-prompt must use the token"),
    ],
)
def test_bad_pivotal_options_are_named(tmp_path, argv, message):
    with pytest.raises(ValueError, match=message):
        studio("train", "dreambooth", "--model", "tiny", "--data", "x",
               "--instance-prompt", INSTANCE_PROMPT, "--out", str(tmp_path / "run"), *argv)
    assert not (tmp_path / "run").exists()
