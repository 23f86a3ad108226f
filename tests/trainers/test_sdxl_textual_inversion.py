"""Textual inversion on SD-XL (issue #18, acceptance 3): both encoders' rows, one file every tool reads.

The trainer is driven directly on `tiny-sdxl` (eager steps, seconds); the
embedding it writes is read back by the studio, converted to kohya's
layout and back bit for bit, and loaded by real diffusers
(`StableDiffusionXLPipeline.load_textual_inversion`, once per encoder) into
the tiny model the studio exports.
"""

import keras
import numpy as np
import pytest
from keras import ops

TOKEN = "<sdxl-toy>"
INIT_WORD = "toy"
LATENT_SIZE = 8


@pytest.fixture(scope="module")
def backbone():
    from studio.interop import load_backbone

    keras.utils.set_random_seed(0)
    return load_backbone("tiny-sdxl")


@pytest.fixture(scope="module")
def fresh_backbone(backbone):
    """Another tiny-sdxl: the same seeded weights, a tokenizer without the trainer's token."""
    from studio.interop import load_backbone

    fresh = load_backbone("tiny-sdxl")
    assert fresh.token_table_hash == backbone.token_table_hash
    return fresh


def _batches(tokenizer, seed=0, batch_size=2):
    rng = np.random.default_rng(seed)
    prompts = [f"a photo of a {TOKEN}", f"a {TOKEN} on a table"]
    while True:
        chosen = [prompts[i] for i in rng.integers(0, len(prompts), batch_size)]
        mean = rng.standard_normal((batch_size, LATENT_SIZE, LATENT_SIZE, 4))
        moments = np.concatenate([mean, np.full_like(mean, -2.0)], axis=-1).astype("float32")
        yield {"token_ids": tokenizer(chosen), "moments": moments}


@pytest.fixture(scope="module")
def trained(backbone, quick_compile_options):
    """A trainer after 2 steps at a high rate, and the networks' weights before them."""
    from studio.trainers.textual_inversion.sdxl_textual_inversion_trainer import (
        SDXLTextualInversionTrainer,
    )

    before = {
        name: [np.array(ops.convert_to_numpy(w)) for w in network.weights]
        for name, network in backbone.components.items()
    }
    trainer = SDXLTextualInversionTrainer(backbone, TOKEN, INIT_WORD, num_vectors=2, seed=1)
    initial = trainer.learned_vectors()
    trainer.compile(optimizer=keras.optimizers.Adam(5e-2), **quick_compile_options)
    batches = _batches(backbone.tokenizer)
    for _ in range(2):
        trainer.train_on_batch(next(batches))
    return trainer, initial, before


def test_placeholder_rows_start_from_the_init_word_in_each_encoder(backbone, trained):
    trainer, initial, _ = trained
    ids = backbone.tokenizer.placeholder_tokens[TOKEN]
    assert len(ids) == 2 and ids[0] == trainer.placeholder_embedding["clip_l"].first_new_id
    word_ids = backbone.tokenizer.tokenize_words(INIT_WORD)
    for key, table in backbone.token_embeddings.items():
        rows = ops.convert_to_numpy(table.embeddings)[word_ids]
        expected = rows if len(word_ids) == 2 else np.repeat(rows.mean(0, keepdims=True), 2, 0)
        np.testing.assert_array_equal(initial[key], expected.astype("float32"))
    assert initial["clip_l"].shape == (2, 32) and initial["clip_g"].shape == (2, 64)


def test_only_both_encoders_placeholder_vectors_train(backbone, trained):
    trainer, initial, before = trained
    shapes = sorted(tuple(v.shape) for v in trainer.trainable_variables)
    assert shapes == [(2, 32), (2, 64)]
    learned = trainer.learned_vectors()
    for key in ("clip_l", "clip_g"):
        assert np.abs(learned[key] - initial[key]).max() > 1e-3, key
    for name, network in backbone.components.items():
        for old, new in zip(before[name], network.weights):
            np.testing.assert_array_equal(old, ops.convert_to_numpy(new), err_msg=name)
    assert np.isfinite(float(ops.convert_to_numpy(trainer.step_loss.result())))
    assert set(trainer.log_scalars()) == {
        f"vector_norm/{key}/{TOKEN}{suffix}" for key in ("clip_l", "clip_g") for suffix in ("", "_1")
    }


def test_the_step_conditions_on_both_encoders_and_the_training_size(backbone, trained):
    trainer, _, _ = trained
    batch = next(_batches(backbone.tokenizer))
    ids = batch["token_ids"]
    conditioning = trainer.encode_text(ids)
    assert set(conditioning) == {"context", "text_embeds", "time_ids"}
    assert conditioning["context"].shape == (2, 77, 96)
    latents = np.zeros((2, 4, 6, 4), "float32")
    sized = trainer._sized_conditioning(conditioning, latents)
    np.testing.assert_array_equal(ops.convert_to_numpy(sized["time_ids"]),
                                  [[32, 48, 0, 0, 32, 48]] * 2)  # fmt: skip
    # The placeholder rows reach both halves of the context and the pooled vector.
    plain = backbone.encode_text(ids)
    for name in ("context", "text_embeds"):
        assert np.abs(np.asarray(conditioning[name]) - np.asarray(plain[name])).max() > 1e-4


def test_more_than_one_placeholder_is_refused_in_one_line(backbone):
    from studio.errors import InvalidInputError
    from studio.trainers.textual_inversion.sdxl_textual_inversion_trainer import (
        SDXLTextualInversionTrainer,
    )

    with pytest.raises(InvalidInputError, match="one placeholder") as error:
        SDXLTextualInversionTrainer(backbone, ["<a1>", "<b1>"], ["cat", "dog"])
    assert "\n" not in str(error.value)


def test_the_embedding_file_reads_back_and_converts_bit_exactly(backbone, trained, tmp_path):
    from studio.embeddings import backbone_with_embeddings, convert_embedding, load_embedding

    trainer, _, _ = trained
    path = trainer.save_embedding(str(tmp_path / "toy.safetensors"), steps=2)
    import safetensors.numpy

    assert sorted(safetensors.numpy.load_file(path)) == ["clip_g", "clip_l"]
    native = load_embedding(path)
    assert (native.format, native.architecture, native.steps) == ("native", "sd-xl", 2)
    assert native.metadata["studio.placeholder"] == TOKEN
    learned = trainer.learned_vectors()
    for key in learned:
        np.testing.assert_array_equal(native.vectors[key], learned[key])
    # To kohya's layout (what A1111/Forge/ComfyUI read) and back.
    kohya = convert_embedding(path, tmp_path / "kohya.safetensors", format="kohya")
    read = load_embedding(tmp_path / "kohya.safetensors")
    assert read.format == "kohya"
    assert read.metadata["modelspec.architecture"].startswith("stable-diffusion-xl")
    convert_embedding(tmp_path / "kohya.safetensors", tmp_path / "back.safetensors")
    back = load_embedding(tmp_path / "back.safetensors")
    for key in learned:
        for embedding in (kohya, read, back):
            assert embedding.vectors[key].tobytes() == learned[key].tobytes()
    assert back.metadata["studio.placeholder"] == TOKEN and back.steps == 2
    # Generation reads the file: the same conditioning as the trainer's. (The
    # shared tokenizer has the trainer's token, so the view gets another name.)
    view = backbone_with_embeddings(backbone, [back.renamed("<loaded>")])
    expected = trainer.encode_text(backbone.tokenizer([f"a photo of a {TOKEN}"]))
    actual = view.encode_text(view.tokenizer(["a photo of a <loaded>"]))
    for name in expected:
        np.testing.assert_allclose(np.asarray(actual[name]), np.asarray(expected[name]),
                                   rtol=1e-6, atol=1e-6)  # fmt: skip


def test_diffusers_script_pair_joins_into_one_sdxl_embedding(trained, tmp_path):
    import safetensors.numpy

    from studio.embeddings.sdxl_embedding_file import load_diffusers_sdxl_embedding

    trainer, _, _ = trained
    learned = trainer.learned_vectors()
    safetensors.numpy.save_file({TOKEN: learned["clip_l"]}, tmp_path / "learned_embeds.safetensors")
    safetensors.numpy.save_file({TOKEN: learned["clip_g"]},
                                tmp_path / "learned_embeds_2.safetensors")  # fmt: skip
    joined = load_diffusers_sdxl_embedding(
        tmp_path / "learned_embeds.safetensors", tmp_path / "learned_embeds_2.safetensors"
    )
    assert joined.architecture == "sd-xl" and joined.metadata["studio.placeholder"] == TOKEN
    for key in learned:
        np.testing.assert_array_equal(joined.vectors[key], learned[key])
    # The same from the command line, into kohya's one file.
    from studio.cli.main import build_parser
    from studio.embeddings import load_embedding

    out = tmp_path / "toy.safetensors"
    args = build_parser().parse_args([
        "embeddings", "convert", str(tmp_path / "learned_embeds.safetensors"), str(out),
        "--clip-g", str(tmp_path / "learned_embeds_2.safetensors"), "--format", "kohya",
    ])  # fmt: skip
    assert args.run(args) == 0
    kohya = load_embedding(out)
    assert kohya.format == "kohya" and kohya.metadata["studio.placeholder"] == TOKEN
    for key in learned:
        assert kohya.vectors[key].tobytes() == learned[key].tobytes()


# Exports tiny-sdxl and loads it in diffusers: about 20 s on a busy 2-core machine.
@pytest.mark.large
def test_diffusers_loads_the_file_into_both_encoders_with_equal_vectors(
    backbone, fresh_backbone, trained, tmp_path
):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    from safetensors.torch import load_file

    from studio.interop import export_diffusers_folder

    trainer, _, _ = trained
    path = trainer.save_embedding(str(tmp_path / "toy.safetensors"))
    # The model as it was, exported: its tokenizer has no placeholder.
    assert TOKEN not in fresh_backbone.tokenizer.placeholder_tokens
    folder = export_diffusers_folder(fresh_backbone, str(tmp_path / "tiny-sdxl"))
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(folder)
    state = load_file(path)
    pipe.load_textual_inversion(state["clip_l"], token=TOKEN, text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer)  # fmt: skip
    pipe.load_textual_inversion(state["clip_g"], token=TOKEN, text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)  # fmt: skip
    learned = trainer.learned_vectors()
    for key, tokenizer, encoder in (("clip_l", pipe.tokenizer, pipe.text_encoder),
                                    ("clip_g", pipe.tokenizer_2, pipe.text_encoder_2)):  # fmt: skip
        ids = tokenizer.convert_tokens_to_ids([TOKEN, f"{TOKEN}_1"])
        assert ids == backbone.tokenizer.placeholder_tokens[TOKEN], key
        rows = encoder.get_input_embeddings().weight.detach().numpy()[ids]
        np.testing.assert_array_equal(rows, learned[key], err_msg=key)
    # diffusers' prompt encoding with the token matches the studio's.
    prompt = f"a photo of a {TOKEN}"
    with torch.no_grad():
        context, _, pooled, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False)
    studio = trainer.encode_text(trainer.backbone.tokenizer([prompt]))
    np.testing.assert_allclose(context.numpy(), np.asarray(studio["context"]), atol=1e-4,
                               rtol=1e-4)  # fmt: skip
    np.testing.assert_allclose(pooled.numpy(), np.asarray(studio["text_embeds"]), atol=1e-4,
                               rtol=1e-4)  # fmt: skip


# A run, its samples and a resume through the command line: about 60 s.
@pytest.mark.large
@pytest.mark.tensorflow_only
def test_train_command_runs_resumes_and_samples_on_tiny_sdxl(tmp_path, write_toy_images,
                                                             eager_compile, monkeypatch):  # fmt: skip
    import json
    import os

    from studio.cli.main import run_command as studio
    from studio.embeddings import load_embedding
    from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer

    eager_compile(monkeypatch, TextualInversionTrainer)

    images = write_toy_images(tmp_path / "images", 2, 64)
    run = tmp_path / "run"
    common = ["train", "textual-inversion", "--out", str(run), "--cache-dir",
              str(tmp_path / "cache")]  # fmt: skip
    assert studio(
        *common, "--model", "tiny-sdxl", "--data", str(images), "--token", TOKEN,
        "--init-word", INIT_WORD, "--steps", "2", "--save-every", "1", "--sample-every", "2",
        "--sample-steps", "2", "--latent-variants", "1", "--lr", "0.01",
    ) == 0
    first = load_embedding(run / "embedding.safetensors")
    assert first.architecture == "sd-xl" and first.steps == 2
    assert first.metadata["studio.placeholder"] == TOKEN
    assert sorted(os.listdir(run / "samples")) == ["step-000002-0.png", "step-000002-1.png"]
    assert studio(*common, "--resume", "--steps", "3", "--sample-every", "0") == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 3
    assert summary["resumed_from_step"] == 2 and np.isfinite(summary["final_loss"])
    after = load_embedding(run / "embedding.safetensors")
    assert after.steps == 3
    assert not np.array_equal(after.vectors["clip_g"], first.vectors["clip_g"])
