"""Textual inversion on SD3 (issue #19): CLIP-L and CLIP-G rows, flow matching, one file.

The trainer is driven directly on `tiny-sd3` (eager steps under
TensorFlow): only the placeholder's rows in both encoders move, the file
reads back bit for bit, a freshly built tiny-sd3 given the file conditions
the MMDiT exactly as the trainer does, and a step resumed from a checkpoint
equals the uninterrupted one. The command line (train, resume, generate
with `--embedding`) is the `large` test at the end.
"""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from studio.cli.main import run_command
from studio.errors import InvalidInputError, SettingsError

TOKEN = "<sd3-toy>"
# tiny-sd3's tokenizer spells words by bytes: "red" is r, e, d</w>.
INIT_WORD = "red"
NUM_VECTORS = 3
LATENT_SIZE = 8
LATENT_CHANNELS = 16
# (clip_l, clip_g) widths of tiny-sd3.
WIDTHS = {"clip_l": 32, "clip_g": 48}
ENCODERS = tuple(WIDTHS)

# As tests/models/sd3: keras-hub's SD3 backbone takes about 70 s to build
# under JAX on 2 shared cores (7 s under TensorFlow).
pytestmark = [pytest.mark.large] if keras.backend.backend() == "jax" else []


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


@pytest.fixture(scope="module")
def backbone():
    from studio.interop import load_backbone

    return load_backbone("tiny-sd3")


def _batches(tokenizer, token, seed=0, batch_size=2):
    """Endless batches of token ids and random VAE moments (16 latent channels)."""
    rng = np.random.default_rng(seed)
    prompts = [f"a {token}", f"{token} on red"]
    while True:
        chosen = [prompts[i] for i in rng.integers(0, len(prompts), batch_size)]
        mean = rng.standard_normal((batch_size, LATENT_SIZE, LATENT_SIZE, LATENT_CHANNELS))
        moments = np.concatenate([mean, np.full_like(mean, -2.0)], axis=-1).astype("float32")
        yield {"token_ids": tokenizer(chosen), "moments": moments}


def _trainer(backbone, token, quick_compile_options, **kwargs):
    from studio.trainers.textual_inversion.sd3_textual_inversion_trainer import (
        SD3TextualInversionTrainer,
    )

    trainer = SD3TextualInversionTrainer(
        backbone, token, INIT_WORD, num_vectors=NUM_VECTORS, seed=1, **kwargs
    )
    trainer.compile(optimizer=keras.optimizers.Adam(5e-2), **quick_compile_options)
    return trainer


@pytest.fixture(scope="module")
def trained(backbone, quick_compile_options):
    """A trainer after 2 steps at a high rate, its starting vectors and the networks before."""
    before = {
        name: [numpy(w).copy() for w in network.weights]
        for name, network in backbone.components.items()
    }
    trainer = _trainer(backbone, TOKEN, quick_compile_options)
    initial = trainer.learned_vectors()
    batches = _batches(backbone.tokenizer, TOKEN)
    for _ in range(2):
        trainer.train_on_batch(next(batches))
    return trainer, initial, before


def test_placeholder_rows_start_from_the_init_word_in_each_clip_table(backbone, trained):
    trainer, initial, _ = trained
    ids = backbone.tokenizer.placeholder_tokens[TOKEN]
    assert ids == list(range(ids[0], ids[0] + NUM_VECTORS))
    word_ids = backbone.tokenizer.tokenize_words(INIT_WORD)
    assert len(word_ids) == NUM_VECTORS
    for key, table in backbone.token_embeddings.items():
        assert trainer.placeholder_embedding[key].first_new_id == ids[0]
        # One vector per piece of the init word, in order, from that encoder's own table.
        np.testing.assert_array_equal(initial[key], numpy(table.embeddings)[word_ids])
        assert initial[key].shape == (NUM_VECTORS, WIDTHS[key])


def test_only_both_encoders_placeholder_rows_train(backbone, trained):
    trainer, initial, before = trained
    shapes = sorted(tuple(v.shape) for v in trainer.trainable_variables)
    assert shapes == [(NUM_VECTORS, 32), (NUM_VECTORS, 48)]
    learned = trainer.learned_vectors()
    for key in ENCODERS:
        assert np.abs(learned[key] - initial[key]).max() > 1e-3, key
    # CLIP-L, CLIP-G (their token tables included), the MMDiT and the VAE: unchanged.
    assert set(before) == {"clip_l", "clip_g", "mmdit", "vae"}
    for name, network in backbone.components.items():
        assert network.trainable is False
        for old, new in zip(before[name], network.weights):
            np.testing.assert_array_equal(old, numpy(new), err_msg=name)
    assert np.isfinite(float(numpy(trainer.step_loss.result())))
    assert trainer.objective.get_config()["weighting_scheme"] == "logit_normal"


def test_the_rows_reach_the_mmdits_context_and_pooled_projection(backbone, trained):
    trainer, _, _ = trained
    conditioning = trainer.encode_text(backbone.tokenizer([f"a {TOKEN}"]))
    assert set(conditioning) == {"context", "pooled_projection"}
    # The rows started as "red"'s three pieces; after two steps the prompts differ.
    plain = backbone.encode_text(backbone.tokenizer([f"a {INIT_WORD}"]))
    clip_width = sum(WIDTHS.values())
    context, plain_context = numpy(conditioning["context"]), numpy(plain["context"])
    assert np.abs(context - plain_context)[..., :clip_width].max() > 1e-4
    pooled = numpy(conditioning["pooled_projection"])
    plain_pooled = numpy(plain["pooled_projection"])
    # Both halves of the pooled projection (CLIP-L's, then CLIP-G's) see the new rows.
    assert np.abs(pooled - plain_pooled)[:, :32].max() > 1e-4
    assert np.abs(pooled - plain_pooled)[:, 32:].max() > 1e-4


def test_the_file_round_trips_and_a_fresh_model_reads_it_exactly(backbone, trained, tmp_path):
    import safetensors.numpy

    from studio.cli.embeddings_command import describe_embedding
    from studio.embeddings import backbone_with_embeddings, convert_embedding, load_embedding
    from studio.models.sd3 import SD3Backbone

    trainer, _, _ = trained
    path = trainer.save_embedding(str(tmp_path / "sd3-toy.safetensors"), steps=2)
    stored = safetensors.numpy.load_file(path)
    assert {key: value.shape for key, value in stored.items()} == {
        key: (NUM_VECTORS, width) for key, width in WIDTHS.items()
    }
    embedding = load_embedding(path)
    assert (embedding.format, embedding.architecture, embedding.steps) == ("native", "sd-xl", 2)
    assert embedding.base_model == "tiny-sd3"
    assert embedding.metadata["studio.placeholder"] == TOKEN
    assert embedding.metadata["studio.base_family"] == "sd3"
    assert "Format: native (SD3 (clip_l + clip_g))" in describe_embedding(embedding)
    assert embedding.token_table_hash == backbone.token_table_hash
    learned = trainer.learned_vectors()
    for key in ENCODERS:
        assert embedding.vectors[key].tobytes() == learned[key].tobytes()
    # kohya's layout names SD3 in its ModelSpec, and converts back bit for bit.
    convert_embedding(path, tmp_path / "kohya.safetensors", format="kohya")
    kohya = load_embedding(tmp_path / "kohya.safetensors")
    assert kohya.format == "kohya"
    assert kohya.metadata["modelspec.architecture"] == "stable-diffusion-3/textual-inversion"
    back = convert_embedding(tmp_path / "kohya.safetensors", tmp_path / "back.safetensors")
    assert back.metadata["studio.base_family"] == "sd3" and back.steps == 2
    for key in ENCODERS:
        assert kohya.vectors[key].tobytes() == back.vectors[key].tobytes() == learned[key].tobytes()

    # A tiny-sd3 built anew (the same seeded weights, no placeholder) with the file.
    fresh = SD3Backbone.from_preset("tiny-sd3")
    assert TOKEN not in fresh.tokenizer.placeholder_tokens
    view = backbone_with_embeddings(fresh, [embedding])
    prompts = [f"a photo of {TOKEN}", "red"]
    expected = trainer.encode_text(backbone.tokenizer(prompts))
    actual = view.encode_text(view.tokenizer(prompts))
    for name in ("context", "pooled_projection"):
        np.testing.assert_array_equal(numpy(actual[name]), numpy(expected[name]), err_msg=name)


def test_a_resumed_step_equals_the_uninterrupted_one(backbone, quick_compile_options, tmp_path):
    from studio.trainers.run.training_checkpoint import TrainingCheckpoint

    token = "<sd3-resume>"
    uninterrupted = _trainer(backbone, token, quick_compile_options)
    # Made after the trainer added the token to the tokenizer.
    batches = list(itertools.islice(_batches(backbone.tokenizer, token, seed=3), 3))
    uninterrupted.train_on_batch(batches[0])
    checkpoints = TrainingCheckpoint(tmp_path)
    checkpoints.save(uninterrupted, step=1)
    at_checkpoint = uninterrupted.learned_vectors()
    for batch in batches[1:]:
        uninterrupted.train_on_batch(batch)

    # Another process's trainer: the registered token's ids are reused.
    resumed = _trainer(backbone, token, quick_compile_options)
    assert checkpoints.restore(resumed)["step"] == 1
    for batch in batches[1:]:
        resumed.train_on_batch(batch)
    expected, actual = uninterrupted.learned_vectors(), resumed.learned_vectors()
    for key in ENCODERS:
        assert np.abs(expected[key] - at_checkpoint[key]).max() > 1e-3, key
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def test_a_half_precision_model_trains_float32_rows_with_loss_scaling(quick_compile_options):
    from studio.models.sd3 import SD3Backbone
    from studio.trainers.textual_inversion.sd3_textual_inversion_trainer import (
        SD3TextualInversionTrainer,
    )

    # What `studio train textual-inversion --precision mixed_float16` builds:
    # frozen networks stored in float16.
    half = SD3Backbone.from_preset("tiny-sd3", dtype="float16")
    trainer = SD3TextualInversionTrainer(half, "<sd3-half>", INIT_WORD, seed=0)
    assert (trainer.precision, trainer.weights_dtype) == ("mixed_float16", "float16")
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2), **quick_compile_options)
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    initial = trainer.learned_vectors()
    trainer.train_on_batch(next(_batches(half.tokenizer, "<sd3-half>")))
    assert np.isfinite(float(numpy(trainer.step_loss.result())))
    for key, vectors in trainer.learned_vectors().items():
        assert vectors.dtype == np.float32 and np.abs(vectors - initial[key]).max() > 1e-3


def test_bad_arguments_are_refused_in_one_line(backbone):
    from studio.trainers.textual_inversion.sd3_textual_inversion_trainer import (
        SD3TextualInversionTrainer,
    )

    size = backbone.tokenizer.vocabulary_size
    cases = [
        # "r" is a word of the vocabulary: learning it would change every "r".
        (("r", "red"), "vocabulary"),
        ((["<a3>", "<b3>"], ["red", "blue"]), "SD3 textual inversion learns one placeholder"),
        (("<c3>", ""), "at least one token"),
    ]
    for (tokens, words), message in cases:
        with pytest.raises(InvalidInputError, match=message) as error:
            SD3TextualInversionTrainer(backbone, tokens, words)
        assert "\n" not in str(error.value)
    # Nothing was added to the shared tokenizer.
    assert backbone.tokenizer.vocabulary_size == size


def test_sdxl_embeddings_do_not_load_into_sd3_models(backbone):
    from studio.embeddings import TextualInversionEmbedding, backbone_with_embeddings

    sdxl = TextualInversionEmbedding(
        {"clip_l": np.zeros((1, 32), "float32"), "clip_g": np.zeros((1, 64), "float32")},
        architecture="sd-xl", base_model="tiny-sdxl",
    )  # fmt: skip
    with pytest.raises(InvalidInputError, match="does not fit this SD3 model.*tiny-sdxl") as error:
        backbone_with_embeddings(backbone, [sdxl], names=["<xl>"])
    assert "\n" not in str(error.value)
    sd = TextualInversionEmbedding({"<sd>": np.zeros((1, 32), "float32")})
    with pytest.raises(InvalidInputError, match="SD 1.x/2.x embedding .* an SD3 model"):
        backbone_with_embeddings(backbone, [sd])


def _train_options(tmp_path, images, out):
    return [
        "train", "textual-inversion", "--model", "tiny-sd3", "--data", str(images),
        "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--token", TOKEN,
        "--init-word", INIT_WORD,
    ]  # fmt: skip


@pytest.mark.parametrize("option", [["--min-snr-gamma", "5"], ["--offset-noise", "0.1"]])
def test_ddpm_options_are_refused_before_loading(tmp_path, write_toy_images, option):
    images = write_toy_images(tmp_path / "images", 1, 64)
    with pytest.raises(SettingsError, match=f"{option[0]} is not supported for SD3") as error:
        run_command(*_train_options(tmp_path, images, tmp_path / "run"), *option)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


# A run with samples and a checkpoint, its resume, a refused resolution and
# a generation with the file through the command line: about a minute on
# 2 shared cores (two model builds and a compiled sampling loop).
@pytest.mark.large
@pytest.mark.tensorflow_only
def test_train_command_resumes_and_generate_uses_the_embedding(
    tmp_path, write_toy_images, eager_compile, monkeypatch
):
    import json
    import os
    import shutil

    from PIL import Image

    from studio.embeddings import load_embedding
    from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer

    eager_compile(monkeypatch, TextualInversionTrainer)
    images = write_toy_images(tmp_path / "images", 2, 64)
    with pytest.raises(SettingsError, match="--resolution must be 64 for tiny-sd3"):
        run_command(*_train_options(tmp_path, images, tmp_path / "wrong"), "--resolution", "32")
    assert not (tmp_path / "wrong").exists()

    run = tmp_path / "run"
    common = _train_options(tmp_path, images, run)
    assert run_command(
        *common, "--num-vectors", "2", "--steps", "2", "--save-every", "1", "--sample-every",
        "2", "--sample-steps", "2", "--latent-variants", "1", "--lr", "0.01",
    ) == 0  # fmt: skip
    first = load_embedding(run / "embedding.safetensors")
    assert first.architecture == "sd-xl" and first.steps == 2 and first.base_model == "tiny-sd3"
    assert {key: value.shape for key, value in first.vectors.items()} == {
        key: (2, width) for key, width in WIDTHS.items()
    }
    assert sorted(os.listdir(run / "samples")) == ["step-000002-0.png", "step-000002-1.png"]
    shutil.copy(run / "embedding.safetensors", tmp_path / "first.safetensors")
    assert run_command(*common, "--resume", "--steps", "3", "--sample-every", "0") == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 3
    assert summary["resumed_from_step"] == 2 and np.isfinite(summary["final_loss"])
    after = load_embedding(run / "embedding.safetensors")
    assert after.steps == 3
    for key in ENCODERS:
        assert not np.array_equal(after.vectors[key], first.vectors[key]), key

    def generate(embedding, out):
        assert run_command(
            "generate", "--model", "tiny-sd3", "--prompt", f"a photo of {TOKEN}", "--steps",
            "2", "--seed", "1", "--embedding", str(embedding), "--out", str(out),
        ) == 0  # fmt: skip
        (path,) = sorted(out.glob("*.png"))
        image = Image.open(path)
        assert image.size == (64, 64)
        # The infotext names the file as A1111 does (its name without extension).
        assert f'TI hashes: "{embedding.stem}: ' in image.info["parameters"]
        return np.asarray(image.convert("RGB")).astype(int)

    # The learned vectors steer the image: the step-2 and step-3 files differ.
    final = generate(run / "embedding.safetensors", tmp_path / "final")
    earlier = generate(tmp_path / "first.safetensors", tmp_path / "earlier")
    assert np.abs(final - earlier).max() > 0


def test_flow_matching_options_reach_the_objective(tmp_path, write_toy_images):
    """`--weighting-scheme` and `--precondition-outputs` (diffusers' names) set the objective."""
    from studio.trainers import TextualInversionSettings
    from studio.trainers.textual_inversion.textual_inversion_training import (
        build_textual_inversion,
    )

    images = write_toy_images(tmp_path / "images", 1, 64)
    for scheme, precondition in (("logit_normal", False), ("mode", True)):
        settings = TextualInversionSettings(
            model="tiny-sd3", data=str(images), token=TOKEN, init_word=INIT_WORD,
            cache_dir=str(tmp_path / "cache"), weighting_scheme=scheme,
            precondition_outputs=precondition)
        trainer, _ = build_textual_inversion(settings)
        config = trainer.objective.get_config()
        assert (config["weighting_scheme"], config["precondition_outputs"]) == (
            scheme, precondition)
        assert trainer.get_config()["objective_options"] == settings.flow_matching_options()


@pytest.mark.parametrize("option, shown", [
    (["--weighting-scheme", "cosmap"], "--weighting-scheme cosmap"),
    (["--precondition-outputs"], "--precondition-outputs"),
])
def test_flow_matching_options_are_refused_for_a_ddpm_model_in_one_line(
    tmp_path, write_toy_images, option, shown
):
    images = write_toy_images(tmp_path / "images", 1, 64)
    with pytest.raises(SettingsError, match="flow-matching options of SD3") as error:
        run_command(
            "train", "textual-inversion", "--model", "tiny", "--data", str(images),
            "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
            "--token", "<toy>", "--init-word", "toy", *option,
        )  # fmt: skip
    assert str(error.value).endswith(f"Received: {shown}") and "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()
