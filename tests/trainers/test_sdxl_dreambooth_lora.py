"""DreamBooth LoRA on SD-XL (issue #18, acceptance 3): kohya's SDXL names, loaded by diffusers.

A LoRA trained here on `tiny-sdxl` (UNet and both text encoders) is saved
in kohya's SDXL names (`lora_unet_input_blocks_...`, `lora_te1_...`,
`lora_te2_...`); real diffusers' `load_lora_weights` (with peft) on the
tiny model the studio exports changes the UNet's prediction and the prompt
embeddings as the LoRA changes the studio's.
"""

import re

import keras
import numpy as np
import pytest
from keras import ops

PROMPT = "a photo of sks toy"
LATENT_SIZE = 8


@pytest.fixture(scope="module")
def trained(quick_compile_options):
    """A LoRA DreamBooth trainer on its own tiny-sdxl after 2 steps at a high rate."""
    from studio.interop import load_backbone
    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer

    backbone = load_backbone("tiny-sdxl")
    trainer = DreamBoothTrainer(backbone, prior_loss_weight=0.0, lora_rank=2,
                                lora_feed_forward=True, train_text_encoder=True, seed=1)  # fmt: skip
    trainer.compile(optimizer=keras.optimizers.AdamW(2e-2), **quick_compile_options)
    rng = np.random.default_rng(0)

    for _ in range(2):
        mean = rng.standard_normal((2, LATENT_SIZE, LATENT_SIZE, 4))
        moments = np.concatenate([mean, np.full_like(mean, -2.0)], axis=-1)
        trainer.train_on_batch({"token_ids": backbone.tokenizer([PROMPT] * 2),
                                "moments": moments.astype("float32")})  # fmt: skip
    return trainer


def test_lora_file_has_kohya_sdxl_names(trained, tmp_path):
    from studio.lora.lora_weights import LoRAWeights

    path = trained.save_lora(str(tmp_path / "lora.safetensors"), steps=2)
    weights = LoRAWeights.load(path)
    names = set(weights.modules)
    pattern = re.compile(r"lora_(unet_input_blocks|unet_middle_block|unet_output_blocks|te1|te2)_")
    assert all(pattern.match(name) for name in names)
    assert {pattern.match(name).group(1) for name in names} == {
        "unet_input_blocks", "unet_middle_block", "unet_output_blocks", "te1", "te2"}
    # tiny-sdxl: attention on its second level only; one block per level.
    assert "lora_unet_input_blocks_3_1_transformer_blocks_1_attn2_to_k" in names
    assert "lora_unet_middle_block_1_transformer_blocks_0_ff_net_0_proj" in names
    assert "lora_unet_output_blocks_1_1_transformer_blocks_0_attn1_to_out_0" in names
    assert "lora_te2_text_model_encoder_layers_1_mlp_fc2" in names
    assert weights.metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    assert weights.ranks == [2]
    # SDXL reads ViT-L's penultimate states: its last layer gets no gradient.
    last = f"lora_te1_text_model_encoder_layers_{trained.text_encoder.num_layers - 1}_"
    untrained = {name for name, (_, up, _) in weights.modules.items() if not np.abs(up).max()}
    assert untrained == {name for name in names if name.startswith(last)}


def test_applied_file_reproduces_the_trained_model(trained, tmp_path):
    from studio.interop import load_backbone
    from studio.lora.lora_weights import LoRAWeights

    path = trained.save_lora(str(tmp_path / "lora.safetensors"))
    fresh = load_backbone("tiny-sdxl")
    ids = fresh.tokenizer([PROMPT])
    before = np.asarray(fresh.encode_text(ids)["context"])
    LoRAWeights.load(path).apply(fresh)
    after = fresh.encode_text(ids)
    expected = trained.backbone.encode_text(ids)
    np.testing.assert_allclose(np.asarray(after["context"]), np.asarray(expected["context"]),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    assert np.abs(np.asarray(after["context"]) - before).max() > 1e-4


def _relative(actual, expected):
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12))


# Exports tiny-sdxl and runs it in diffusers with and without the LoRA: about 40 s.
@pytest.mark.large
def test_diffusers_load_lora_weights_changes_its_output_as_the_studio(trained, tmp_path):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    pytest.importorskip("peft")
    from studio.interop import export_diffusers_folder, load_backbone

    path = trained.save_lora(str(tmp_path / "lora.safetensors"))
    base = load_backbone("tiny-sdxl")
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(
        export_diffusers_folder(base, str(tmp_path / "tiny-sdxl"))
    )
    rng = np.random.default_rng(5)
    latents = rng.standard_normal((2, LATENT_SIZE, LATENT_SIZE, 4)).astype("float32")
    timesteps = np.array([10, 700], "int32")
    ids = base.tokenizer([PROMPT, "a red fox"])
    conditioning = {key: np.asarray(value) for key, value in base.encode_text(ids).items()}

    def diffusers_outputs():
        with torch.no_grad():
            context, _, pooled, _ = pipe.encode_prompt([PROMPT, "a red fox"],
                                                       do_classifier_free_guidance=False)  # fmt: skip
            prediction = pipe.unet(
                torch.from_numpy(latents.transpose(0, 3, 1, 2).copy()),
                torch.from_numpy(timesteps).long(),
                torch.from_numpy(conditioning["context"]),
                added_cond_kwargs={"text_embeds": torch.from_numpy(conditioning["text_embeds"]),
                                   "time_ids": torch.from_numpy(conditioning["time_ids"])},
            ).sample  # fmt: skip
        return context.numpy(), prediction.numpy().transpose(0, 2, 3, 1)

    def studio_outputs(backbone):
        context = np.asarray(backbone.encode_text(ids)["context"])
        prediction = np.asarray(ops.convert_to_numpy(
            backbone.denoise(latents, timesteps, conditioning)))  # fmt: skip
        return context, prediction

    theirs_before = diffusers_outputs()
    pipe.load_lora_weights(path)
    theirs_after = diffusers_outputs()
    ours_before, ours_after = studio_outputs(base), studio_outputs(trained.backbone)
    for index, name in enumerate(("prompt embeddings", "UNet prediction")):
        ours = ours_after[index] - ours_before[index]
        theirs = theirs_after[index] - theirs_before[index]
        assert np.abs(ours).max() > 1e-3, f"the LoRA changes the studio's {name}"
        assert _relative(theirs, ours) <= 1e-4, name


# Class images, a LoRA run and a resume through the command line: about 110 s.
@pytest.mark.large
@pytest.mark.tensorflow_only
def test_dreambooth_lora_command_runs_and_resumes_on_tiny_sdxl(tmp_path, write_toy_images,
                                                               eager_compile, monkeypatch):  # fmt: skip
    import json
    import os

    from studio.cli.main import run_command as studio
    from studio.lora.lora_weights import LoRAWeights
    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer

    eager_compile(monkeypatch, DreamBoothTrainer)

    subject = write_toy_images(tmp_path / "subject", 2, 64, prefix="subject")
    run = tmp_path / "run"
    common = ["train", "dreambooth", "--out", str(run), "--cache-dir", str(tmp_path / "cache")]
    assert studio(
        *common, "--model", "tiny-sdxl", "--data", str(subject), "--instance-prompt", PROMPT,
        "--class-prompt", "a photo of a toy", "--num-class-images", "2",
        "--class-image-steps", "2", "--lora-rank", "2", "--steps", "2", "--save-every", "1",
        "--latent-variants", "1", "--log-every", "1",
    ) == 0
    assert len(os.listdir(run / "class_images")) >= 2
    first = LoRAWeights.load(run / "lora.safetensors")
    assert first.metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    assert all(name.startswith("lora_unet_") for name in first.modules)
    assert any(name.startswith("lora_unet_input_blocks_") for name in first.modules)
    assert studio(*common, "--resume", "--steps", "3") == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 3
    assert np.isfinite(summary["final_loss"])


def test_full_run_results_hold_both_trained_text_encoders(tmp_path, quick_compile_options):
    """Full DreamBooth of SD-XL with its text encoders: the run's results hold all three
    trained networks, and `models export RUN` reads them back into the base model."""
    import json

    from studio.cli.models_command import load_export_source
    from studio.interop import load_backbone
    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer

    names = ("unet", "text_encoder", "text_encoder_2")
    backbone = load_backbone("tiny-sdxl")
    base = {name: [ops.convert_to_numpy(w) for w in getattr(backbone, name).weights]
            for name in names}
    trainer = DreamBoothTrainer(backbone, prior_loss_weight=0.0, train_text_encoder=True,
                                seed=1)
    trainer.compile(optimizer=keras.optimizers.AdamW(2e-2), **quick_compile_options)
    mean = np.random.default_rng(0).standard_normal((2, LATENT_SIZE, LATENT_SIZE, 4))
    moments = np.concatenate([mean, np.full_like(mean, -2.0)], axis=-1).astype("float32")
    trainer.train_on_batch({"token_ids": backbone.tokenizer([PROMPT] * 2), "moments": moments})

    paths = trainer.save_results(str(tmp_path), step=1)
    assert sorted(p.rsplit("/", 1)[-1] for p in paths) == [
        "text_encoder.weights.h5", "text_encoder_2.weights.h5", "unet.weights.h5"]
    (tmp_path / "config.json").write_text(json.dumps({"model": "tiny-sdxl"}))
    exported = load_export_source(str(tmp_path))
    for name in names:
        trained_weights = [ops.convert_to_numpy(w) for w in getattr(backbone, name).weights]
        read_back = [ops.convert_to_numpy(w) for w in getattr(exported, name).weights]
        for trained_weight, read in zip(trained_weights, read_back):
            np.testing.assert_array_equal(read, trained_weight, err_msg=name)
        # Each network trained: the export carries what the run learned.
        assert any(not np.array_equal(t, b) for t, b in zip(trained_weights, base[name])), name
