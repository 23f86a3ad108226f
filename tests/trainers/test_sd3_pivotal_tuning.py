"""Pivotal tuning on SD3 (issue #19): a new token's rows in CLIP-L/G + an MMDiT LoRA, one run.

On `tiny-sd3`, a few eager steps: only the token's rows and the LoRA
matrices change; the rows stop after `embedding_steps` while the LoRA goes
on; the three files the run writes (embedding, kohya and diffusers LoRA),
applied as generation applies them, reproduce the trained model; a resumed
run ends as an uninterrupted one. The command line builds this trainer for
`--token` and refuses what it cannot do in one line.
"""

import keras
import numpy as np
import pytest
from keras import ops

from studio.errors import InvalidInputError

TOKEN = "<sks>"
# tiny-sd3's tokenizer spells words by bytes: "red" is r, e, d</w>, one row each.
INIT_WORD = "red"
NUM_VECTORS = 3
PROMPT = f"a photo of {TOKEN}"
LATENT_SIZE = 8
LATENT_CHANNELS = 16
TOTAL_STEPS = 3
EMBEDDING_STEPS = 1
STOP_STEP = 2
LORA_RANK = 2
LEARNING_RATE = 2e-2

# As tests/models/sd3: keras-hub's SD3 backbone takes about 70 s to build
# under JAX on 2 shared cores (7 s under TensorFlow).
pytestmark = [pytest.mark.large] if keras.backend.backend() == "jax" else []


def numpy(x):
    return np.array(ops.convert_to_numpy(x))


def pivotal_trainer(options, embedding_steps=EMBEDDING_STEPS, **kwargs):
    from studio.interop import load_backbone
    from studio.trainers.dreambooth.sd3_pivotal_tuning_trainer import SD3PivotalTuningTrainer

    backbone = load_backbone("tiny-sd3")
    trainer = SD3PivotalTuningTrainer(
        backbone, TOKEN, INIT_WORD, embedding_steps=embedding_steps, num_vectors=NUM_VECTORS,
        lora_rank=LORA_RANK, prior_loss_weight=1.0, seed=3, **kwargs)
    trainer.compile(optimizer=keras.optimizers.AdamW(LEARNING_RATE), **options)
    return trainer


def batches(tokenizer, count, seed=0):
    """`count` batches of one subject example ("a photo of <sks>") and one class example."""
    rng = np.random.default_rng(seed)
    token_ids = np.asarray(tokenizer([PROMPT, "a photo of red"]))
    result = []
    for _ in range(count):
        mean = rng.standard_normal((2, LATENT_SIZE, LATENT_SIZE, LATENT_CHANNELS))
        moments = np.concatenate([mean, np.full_like(mean, -2.0)], -1).astype("float32")
        result.append({"token_ids": token_ids, "moments": moments,
                       "is_class_image": np.array([False, True])})
    return result


def base_weights(backbone):
    return [w for network in backbone.components.values() for w in network.weights
            if "lora_kernel" not in w.path]


def lora_values(trainer):
    return [numpy(v) for v in trainer.trainable_variables if "lora_kernel" in v.path]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from studio.trainers.run.training_checkpoint import TrainingCheckpoint

    return TrainingCheckpoint(tmp_path_factory.mktemp("sd3_pivotal") / "checkpoints")


@pytest.fixture(scope="module")
def trained(quick_compile_options, checkpoints):
    """A trainer after each of its steps: the token's rows, the LoRA, and every base weight.

    Its training state is checkpointed at `STOP_STEP`, after the rows stopped.
    """
    trainer = pivotal_trainer(quick_compile_options)
    base_before = [numpy(v) for v in base_weights(trainer.backbone)]
    history = [(trainer.learned_vectors(), lora_values(trainer))]
    for step, batch in enumerate(batches(trainer.backbone.tokenizer, TOTAL_STEPS), 1):
        trainer.train_on_batch(batch)
        history.append((trainer.learned_vectors(), lora_values(trainer)))
        if step == STOP_STEP:
            checkpoints.save(trainer, step)
    return trainer, base_before, history


def test_the_rows_start_from_the_init_word_in_each_clip_table(trained):
    trainer, _, history = trained
    backbone = trainer.backbone
    word_ids = backbone.tokenizer.tokenize_words(INIT_WORD)
    assert len(word_ids) == NUM_VECTORS
    for key, table in backbone.token_embeddings.items():
        np.testing.assert_array_equal(history[0][0][key], numpy(table.embeddings)[word_ids])


def test_only_the_token_rows_and_the_mmdit_lora_train(trained):
    trainer, base_before, history = trained
    trainable = {v.path for v in trainer.trainable_variables}
    rows = {v.path for v in trainer.trainable_variables if "pivotal_lookup" in v.path}
    assert len(rows) == 2  # one set of rows per CLIP encoder
    lora = trainable - rows
    # The MMDiT's 7 attention modules, A and B each; CLIP-L/G themselves stay frozen.
    assert len(lora) == 2 * 7 and all("lora_kernel" in path for path in lora)
    # Every base weight (the CLIP token tables included) is as it was, bit for bit.
    weights = base_weights(trainer.backbone)
    assert len(weights) == len(base_before) > 0
    for variable, before in zip(weights, base_before):
        np.testing.assert_array_equal(numpy(variable), before)
    first, last = history[0], history[-1]
    assert {key: v.shape for key, v in last[0].items()} == {
        "clip_l": (NUM_VECTORS, 32), "clip_g": (NUM_VECTORS, 48)}
    for key in ("clip_l", "clip_g"):
        assert np.abs(last[0][key] - first[0][key]).max() > 1e-4
    assert max(np.abs(b - a).max() for a, b in zip(first[1], last[1])) > 1e-4


def test_the_rows_stop_after_their_steps_while_the_lora_goes_on(trained):
    _, _, history = trained
    for step in range(1, TOTAL_STEPS + 1):
        (rows_before, lora_before), (rows_after, lora_after) = history[step - 1], history[step]
        rows_moved = max(np.abs(rows_after[k] - rows_before[k]).max() for k in rows_after)
        lora_moved = max(np.abs(b - a).max() for a, b in zip(lora_before, lora_after))
        assert lora_moved > 0, step
        if step <= EMBEDDING_STEPS:
            assert rows_moved > 0, step
        else:
            assert rows_moved == 0, step


def test_the_files_applied_as_generation_applies_them_give_the_trained_model(
        trained, tmp_path):
    from studio.embeddings import load_embedding
    from studio.lora.lora_weights import LoRAWeights
    from studio.pipelines import GenerationRunner, GenerationSettings

    trainer, _, history = trained
    paths = trainer.save_results(str(tmp_path), step=TOTAL_STEPS)
    assert [p.rsplit("/", 1)[-1] for p in map(str, paths)] == [
        "embedding.safetensors", "lora.safetensors", "lora.diffusers.safetensors"]
    embedding_path, lora_path, diffusers_path = map(str, paths)
    embedding = load_embedding(embedding_path)
    assert (embedding.architecture, embedding.steps) == ("sd-xl", TOTAL_STEPS)
    assert embedding.metadata["studio.base_family"] == "sd3"
    assert embedding.metadata["studio.placeholder"] == TOKEN
    for key in ("clip_l", "clip_g"):
        np.testing.assert_array_equal(embedding.vectors[key], history[-1][0][key])
    lora = LoRAWeights.load(lora_path)
    assert lora.metadata["studio_method"] == "pivotal_tuning"
    assert lora.metadata["studio_embedding_file"] == "embedding.safetensors"
    assert lora.metadata["studio_placeholder"] == TOKEN

    trained_view = trainer.sampling_backbone()
    ids = trained_view.tokenizer([PROMPT])
    expected = trained_view.encode_text(ids)
    rng = np.random.default_rng(0)
    latents = ops.convert_to_tensor(
        rng.standard_normal((1, LATENT_SIZE, LATENT_SIZE, LATENT_CHANNELS)), "float32")
    timesteps = ops.convert_to_tensor([500.0], "float32")
    velocity = numpy(trained_view.denoise(latents, timesteps, expected))
    # Either LoRA file, with the embedding, as `studio generate` loads them into a fresh model.
    for path in (lora_path, diffusers_path):
        settings = GenerationSettings(PROMPT, model="tiny-sd3", loras=((path, 1.0),),
                                      embeddings=(embedding_path,), steps=1, seed=0)
        generated = GenerationRunner().pipeline(settings).backbone
        np.testing.assert_array_equal(np.asarray(generated.tokenizer([PROMPT])), np.asarray(ids))
        actual = generated.encode_text(ids)
        for name in ("context", "pooled_projection"):
            np.testing.assert_allclose(numpy(actual[name]), numpy(expected[name]),
                                       rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(numpy(generated.denoise(latents, timesteps, actual)),
                                   velocity, rtol=1e-4, atol=1e-5, err_msg=path)


def test_a_resumed_run_ends_as_the_uninterrupted_one(trained, checkpoints,
                                                    quick_compile_options):
    whole, _, history = trained
    resumed = pivotal_trainer(quick_compile_options)
    assert checkpoints.restore(resumed)["step"] == STOP_STEP
    # The checkpoint holds the rows as they stopped, not as the optimizer left them.
    for key, vectors in resumed.learned_vectors().items():
        np.testing.assert_array_equal(vectors, history[STOP_STEP][0][key])
    for batch in batches(resumed.backbone.tokenizer, TOTAL_STEPS)[STOP_STEP:]:
        resumed.train_on_batch(batch)
    for key, vectors in resumed.learned_vectors().items():
        np.testing.assert_allclose(vectors, history[-1][0][key], rtol=1e-6, atol=1e-7)
    for a, b in zip(history[-1][1], lora_values(resumed)):
        assert np.abs(a).max() > 0
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    for a, b in zip(whole.training_state_extras, resumed.training_state_extras):
        np.testing.assert_array_equal(numpy(b), numpy(a))


def test_text_encoder_lora_and_cached_context_are_refused(trained, quick_compile_options):
    trainer, _, _ = trained
    with pytest.raises(InvalidInputError, match="CLIP-L/G stay frozen"):
        pivotal_trainer(quick_compile_options, train_text_encoder=True)
    ids = np.asarray(trainer.backbone.tokenizer([PROMPT]))
    cached = {key: numpy(value) for key, value in trainer.backbone.encode_text(ids).items()}
    latents = np.zeros((1, LATENT_SIZE, LATENT_SIZE, LATENT_CHANNELS), "float32")
    with pytest.raises(ValueError, match="must hold 'token_ids'"):
        trainer({"latents": latents, **cached})


def test_the_command_builds_the_sd3_pivotal_trainer_for_token(tmp_path):
    from studio.models.sd3 import SD3Backbone
    from studio.trainers import DreamBoothSettings
    from studio.trainers.distributed.data_parallel_devices import DataParallelDevices
    from studio.trainers.dreambooth.dreambooth_training import build_dreambooth_trainer
    from studio.trainers.dreambooth.sd3_pivotal_tuning_trainer import SD3PivotalTuningTrainer

    settings = DreamBoothSettings(
        model="tiny-sd3", data=str(tmp_path), instance_prompt=PROMPT, lora_rank=2,
        lora_feed_forward=True, token=TOKEN, init_word=INIT_WORD, ti_fraction=0.25, steps=8)
    backbone = SD3Backbone.from_preset("tiny-sd3")
    trainer = build_dreambooth_trainer(settings, backbone, DataParallelDevices())
    assert isinstance(trainer, SD3PivotalTuningTrainer)
    config = trainer.get_config()
    assert (config["placeholder_token"], config["initializer_word"]) == (TOKEN, INIT_WORD)
    assert config["embedding_steps"] == 2 and config["lora_rank"] == 2
    # --lora-feed-forward reaches the MMDiT's LoRA: 13 modules, A and B each, and the rows.
    assert len(trainer.trainable_variables) == 2 * 13 + 2
