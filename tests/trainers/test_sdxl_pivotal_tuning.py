"""Pivotal tuning on SD-XL (issue #18): a new token's rows in both encoders + a UNet LoRA, one run.

On `tiny-sdxl`, a few eager steps: only the token's rows and the LoRA
matrices change; the rows stop after `embedding_steps` while the LoRA goes
on; the two files the run writes, applied as generation applies them,
reproduce the trained model; a resumed run ends as an uninterrupted one.
"""

import keras
import numpy as np
import pytest
from keras import ops

TOKEN = "<cross>"
INIT_WORD = "square"
PROMPT = f"a photo of {TOKEN}"
LATENT_SIZE = 8
TOTAL_STEPS = 3
EMBEDDING_STEPS = 1
STOP_STEP = 2
LORA_RANK = 2
LEARNING_RATE = 2e-2


def numpy(x):
    return np.array(ops.convert_to_numpy(x))


def pivotal_trainer(options, model="tiny-sdxl", embedding_steps=EMBEDDING_STEPS):
    from studio.interop import load_backbone
    from studio.trainers.dreambooth.pivotal_tuning_trainer import PivotalTuningTrainer

    backbone = load_backbone(model)
    trainer = PivotalTuningTrainer(backbone, TOKEN, INIT_WORD, embedding_steps=embedding_steps,
                                   lora_rank=LORA_RANK, prior_loss_weight=1.0, seed=3)
    trainer.compile(optimizer=keras.optimizers.AdamW(LEARNING_RATE), **options)
    return trainer


def batches(tokenizer, count, seed=0):
    """`count` batches of one subject example ("a photo of <cross>") and one class example."""
    rng = np.random.default_rng(seed)
    token_ids = np.asarray(tokenizer([PROMPT, "a photo of a square"]))
    result = []
    for _ in range(count):
        mean = rng.standard_normal((2, LATENT_SIZE, LATENT_SIZE, 4))
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

    return TrainingCheckpoint(tmp_path_factory.mktemp("pivotal") / "checkpoints")


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


def test_only_the_token_rows_and_the_lora_train(trained):
    trainer, base_before, history = trained
    trainable = {v.path for v in trainer.trainable_variables}
    rows = {v.path for v in trainer.trainable_variables if "pivotal_lookup" in v.path}
    assert len(rows) == 2  # one set of rows per text encoder
    assert all("lora_kernel" in path for path in trainable - rows)
    # Every base weight (token tables included) is as it was, bit for bit.
    weights = base_weights(trainer.backbone)
    assert len(weights) == len(base_before) > 0
    for variable, before in zip(weights, base_before):
        np.testing.assert_array_equal(numpy(variable), before)
    first, last = history[0], history[-1]
    assert set(last[0]) == {"clip_l", "clip_g"}
    assert all(v.shape[0] == 1 for v in last[0].values())
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


def test_both_files_applied_as_generation_applies_them_give_the_trained_model(
        trained, tmp_path):
    from studio.embeddings import load_embedding
    from studio.lora.lora_weights import LoRAWeights
    from studio.pipelines import GenerationRunner, GenerationSettings

    trainer, _, history = trained
    embedding_path, lora_path = trainer.save_results(str(tmp_path), step=TOTAL_STEPS)
    embedding = load_embedding(embedding_path)
    assert embedding.architecture == "sd-xl" and embedding.steps == TOTAL_STEPS
    for key in ("clip_l", "clip_g"):
        np.testing.assert_array_equal(embedding.vectors[key], history[-1][0][key])
    lora = LoRAWeights.load(lora_path)
    assert lora.metadata["studio_embedding_file"] == "embedding.safetensors"
    assert lora.metadata["studio_placeholder"] == TOKEN

    settings = GenerationSettings(PROMPT, model="tiny-sdxl", loras=((lora_path, 1.0),),
                                  embeddings=(embedding_path,), steps=1, seed=0)
    runner = GenerationRunner()
    generated = runner.pipeline(settings).backbone
    trained_view = trainer.sampling_backbone()
    ids = trained_view.tokenizer([PROMPT])
    np.testing.assert_array_equal(np.asarray(generated.tokenizer([PROMPT])), np.asarray(ids))
    expected = trained_view.encode_text(ids)
    actual = generated.encode_text(ids)
    np.testing.assert_allclose(numpy(actual["context"]), numpy(expected["context"]),
                               rtol=1e-5, atol=1e-5)
    rng = np.random.default_rng(0)
    latents = ops.convert_to_tensor(rng.standard_normal((1, LATENT_SIZE, LATENT_SIZE, 4)), "float32")
    timesteps = ops.convert_to_tensor([500], "int32")
    time_ids = ops.convert_to_tensor(
        [trainer.backbone.time_ids(8 * LATENT_SIZE, 8 * LATENT_SIZE)], "float32")
    np.testing.assert_allclose(
        numpy(generated.denoise(latents, timesteps, dict(actual, time_ids=time_ids))),
        numpy(trained_view.denoise(latents, timesteps, dict(expected, time_ids=time_ids))),
        rtol=1e-4, atol=1e-5)



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
