"""`studio train dreambooth --model tiny-sd3 --lora-rank N` end to end, then `studio generate` with its LoRA."""

import pytest
from PIL import Image

from studio.cli.main import run_command as studio
from studio.errors import SettingsError

IMAGE_SIZE = 64
INSTANCE_PROMPT = "a photo of sks toy"
CLASS_PROMPT = "a photo of a toy"



@pytest.fixture(scope="module")
def workspace(tmp_path_factory, write_toy_images):
    root = tmp_path_factory.mktemp("sd3_dreambooth")
    write_toy_images(root / "subject", 2, IMAGE_SIZE, prefix="subject")
    return root


def _train(workspace, out, *extra, instance_prompt=INSTANCE_PROMPT):
    return studio(
        "train", "dreambooth", "--out", str(workspace / out), "--cache-dir", str(workspace / "cache"),
        "--model", "tiny-sd3", "--data", str(workspace / "subject"),
        "--instance-prompt", instance_prompt, *extra,
    )  # fmt: skip


def test_full_fine_tuning_of_sd3_is_refused_in_one_line(workspace):
    with pytest.raises(SettingsError, match="--lora-rank") as error:
        _train(workspace, "full", "--steps", "1")
    assert "\n" not in str(error.value)
    assert not (workspace / "full").exists()


@pytest.mark.parametrize("option", [["--min-snr-gamma", "5"], ["--offset-noise", "0.1"]])
def test_options_sd3_does_not_have_are_refused_before_loading(workspace, option):
    with pytest.raises(SettingsError, match=f"{option[0]} .*not supported for SD3"):
        _train(workspace, "refused", "--lora-rank", "2", *option)
    assert not (workspace / "refused").exists()


def test_remat_reaches_the_sd3_trainer_and_checkpoints_every_joint_block(workspace):
    """`--remat` builds an `SD3LoRATrainer` whose joint blocks recompute (what they compute:
    `test_sd3_lora_trainer.py`'s remat test)."""
    from studio.models.sd3 import SD3Backbone
    from studio.trainers import DreamBoothSettings
    from studio.trainers.distributed.data_parallel_devices import DataParallelDevices
    from studio.trainers.dreambooth.dreambooth_training import build_dreambooth_trainer

    for remat in (False, True):
        settings = DreamBoothSettings(model="tiny-sd3", data=str(workspace / "subject"),
                                      instance_prompt=INSTANCE_PROMPT, lora_rank=2, remat=remat)
        backbone = SD3Backbone.from_preset("tiny-sd3")
        trainer = build_dreambooth_trainer(settings, backbone, DataParallelDevices())
        assert trainer.remat is remat and trainer.get_config()["remat"] is remat
        wrapped = ["call" in vars(block) for block in backbone.mmdit.joint_blocks]
        assert wrapped == [remat] * len(backbone.mmdit.joint_blocks)


# Class images, a compiled train step of keras-hub's MMDiT and two
# generations: about a minute on 2 shared cores.
@pytest.mark.large
def test_lora_run_writes_kohya_and_diffusers_files_that_generate_uses(workspace):
    code = _train(
        workspace, "lora", "--class-prompt", CLASS_PROMPT, "--num-class-images", "2",
        "--class-image-steps", "2", "--lora-rank", "2", "--steps", "2", "--batch-size", "1",
        "--lr", "1e-3",
    )  # fmt: skip
    assert code == 0
    run = workspace / "lora"
    assert (run / "lora.safetensors").is_file()
    assert (run / "lora.diffusers.safetensors").is_file()
    assert len(list((run / "class_images").glob("*.png"))) == 2

    code = studio(
        "generate", "--model", "tiny-sd3", "--prompt", INSTANCE_PROMPT, "--steps", "2",
        "--seed", "1", "--lora", str(run / "lora.safetensors"), "--out", str(workspace / "images"),
    )  # fmt: skip
    assert code == 0
    images = sorted((workspace / "images").glob("*.png"))
    assert images and Image.open(images[0]).size == (IMAGE_SIZE, IMAGE_SIZE)


# As the LoRA run above, with the token's rows: about 20 s alone on 2 cores.
@pytest.mark.large
def test_pivotal_run_writes_the_embedding_beside_both_lora_files_and_generate_uses_them(
        workspace):
    from studio.embeddings import load_embedding
    from studio.lora.lora_weights import LoRAWeights

    token = "<sks>"
    code = _train(
        workspace, "pivotal", "--class-prompt", CLASS_PROMPT, "--num-class-images", "1", "--class-image-steps", "1",
        "--lora-rank", "2", "--token", token, "--init-word", "toy", "--ti-fraction", "0.5",
        "--steps", "2", "--save-every", "1", "--lr", "1e-2",
        instance_prompt=f"a photo of {token} toy",
    )  # fmt: skip
    assert code == 0
    run = workspace / "pivotal"
    embedding = load_embedding(run / "embedding.safetensors")
    assert embedding.metadata["studio.base_family"] == "sd3"
    assert embedding.metadata["studio.placeholder"] == token and embedding.steps == 2
    for name in ("lora.safetensors", "lora.diffusers.safetensors"):
        assert (run / name).is_file()
    lora = LoRAWeights.load(run / "lora.safetensors")
    assert lora.metadata["studio_embedding_file"] == "embedding.safetensors"
    # One step of the rows (half of 2), then they held: step 1's file equals step 2's.
    first = load_embedding(run / "checkpoints" / "step-000001" / "embedding.safetensors")
    for key in ("clip_l", "clip_g"):
        assert first.vectors[key].tobytes() == embedding.vectors[key].tobytes()

    code = studio(
        "generate", "--model", "tiny-sd3", "--prompt", f"a photo of {token} toy", "--steps", "2",
        "--seed", "1", "--lora", str(run / "lora.safetensors"),
        "--embedding", str(run / "embedding.safetensors"), "--out", str(workspace / "pivotal-images"),
    )  # fmt: skip
    assert code == 0
    assert len(list((workspace / "pivotal-images").glob("*.png"))) == 1


def test_flow_matching_options_reach_the_sd3_objective(workspace):
    """`--weighting-scheme` and `--precondition-outputs`, diffusers' SD3 options, set the objective."""
    from studio.models.sd3 import SD3Backbone
    from studio.trainers import DreamBoothSettings
    from studio.trainers.distributed.data_parallel_devices import DataParallelDevices
    from studio.trainers.dreambooth.dreambooth_training import build_dreambooth_trainer

    for scheme, precondition in (("logit_normal", False), ("mode", True)):
        settings = DreamBoothSettings(
            model="tiny-sd3", data=str(workspace / "subject"), instance_prompt=INSTANCE_PROMPT,
            lora_rank=2, weighting_scheme=scheme, precondition_outputs=precondition)
        trainer = build_dreambooth_trainer(settings, SD3Backbone.from_preset("tiny-sd3"),
                                           DataParallelDevices())
        config = trainer.objective.get_config()
        assert (config["weighting_scheme"], config["precondition_outputs"]) == (
            scheme, precondition)


@pytest.mark.parametrize("option, shown", [
    (["--weighting-scheme", "mode"], "--weighting-scheme mode"),
    (["--precondition-outputs"], "--precondition-outputs"),
])
def test_flow_matching_options_are_refused_for_a_ddpm_model_in_one_line(workspace, option, shown):
    with pytest.raises(SettingsError, match="flow-matching options of SD3") as error:
        studio(
            "train", "dreambooth", "--out", str(workspace / "ddpm"), "--model", "tiny",
            "--data", str(workspace / "subject"), "--instance-prompt", INSTANCE_PROMPT,
            "--lora-rank", "2", "--cache-dir", str(workspace / "cache"), *option,
        )  # fmt: skip
    assert str(error.value).endswith(f"Received: {shown}") and "\n" not in str(error.value)
    assert not (workspace / "ddpm").exists()
