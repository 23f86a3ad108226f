"""Tests of TextualInversionTrainer on the tiny preset (any backend)."""

import copy
import json
import os

import keras
import numpy as np
import pytest

from studio.trainers.textual_inversion.textual_inversion_trainer import EMBEDDING_FILE, TextualInversionTrainer

TRAIN_STEPS = 3
LEARNING_RATE = 1e-2
TOKEN = "<trained>"
# The tiny preset's tokenizer spells words by bytes: "cat" is c, a, t</w>.
INITIALIZER = "cat"
INITIALIZER_TOKENS = 3


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def fit(trainer, batches, steps):
    def tuples():
        for batch in batches:
            yield (batch,)

    return trainer.fit(tuples(), steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)


@pytest.fixture(scope="module")
def trained(tiny_backbone, snapshot_weights, make_batches, quick_compile_options):
    """A trainer fitted for a few steps (jit-compiled under JAX), and the state before."""
    before = snapshot_weights(tiny_backbone)
    trainer = TextualInversionTrainer(tiny_backbone, TOKEN, INITIALIZER, num_vectors=2, seed=1)
    initial = numpy(trainer.new_vectors).copy()
    trainer.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), **quick_compile_options)
    history = fit(trainer, make_batches(tiny_backbone.tokenizer, TOKEN), TRAIN_STEPS)
    return trainer, before, initial, history


def test_training_changes_the_new_vectors_and_no_frozen_weight(trained, snapshot_weights):
    trainer, before, initial, history = trained
    after = snapshot_weights(trainer.backbone)
    for name in before:
        assert len(before[name]) == len(after[name]) > 0
        for old, new in zip(before[name], after[name]):
            assert old.dtype == new.dtype
            np.testing.assert_array_equal(old, new, err_msg=f"{name} changed")
    learned = numpy(trainer.new_vectors)
    assert learned.dtype == np.float32
    # Every new row moved (Adam's first step moves each by about the rate).
    assert np.all(np.abs(learned - initial).max(axis=-1) > LEARNING_RATE / 2)
    assert np.all(np.isfinite(history.history["step_loss"]))
    assert history.history["step_loss"][-1] > 0


@pytest.mark.skipif(
    keras.config.backend() == "jax", reason="under JAX every test here is jit-compiled"
)
@pytest.mark.parametrize(
    "jit_compile",
    [
        # What `studio train` uses: XLA with a GPU, a traced graph on a CPU.
        "auto",
        # TensorFlow takes 20-40 s to XLA-compile even the tiny model's step.
        pytest.param(True, marks=pytest.mark.large),
    ],
    ids=["auto", "xla"],
)
def test_compiled_training_step(tiny_backbone, snapshot_weights, make_batches, jit_compile,
                                unique_token):
    # Its own token: the module's `trained` run may have registered TOKEN in the
    # shared tokenizer before other tests added theirs after it.
    before = snapshot_weights(tiny_backbone)
    trainer = TextualInversionTrainer(tiny_backbone, unique_token, INITIALIZER, num_vectors=2,
                                      seed=1)
    initial = numpy(trainer.new_vectors).copy()
    trainer.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), jit_compile=jit_compile)
    history = fit(trainer, make_batches(tiny_backbone.tokenizer, unique_token), 2)
    assert np.all(np.isfinite(history.history["step_loss"]))
    assert np.all(np.abs(numpy(trainer.new_vectors) - initial).max(axis=-1) > LEARNING_RATE / 2)
    after = snapshot_weights(tiny_backbone)
    for name in before:
        for old, new in zip(before[name], after[name]):
            np.testing.assert_array_equal(old, new)


def test_gradients_and_optimizer_state_are_the_size_of_the_new_vectors(trained):
    trainer = trained[0]
    assert [tuple(v.shape) for v in trainer.trainable_variables] == [(2, 32)]
    for variable in trainer.optimizer.variables:
        assert tuple(variable.shape) in ((), (2, 32)), variable.path
    for network in trainer.backbone.components.values():
        assert not network.trainable and not network.trainable_variables


def test_placeholders_are_the_tokenizers_last_ids(tiny_backbone, unique_token):
    tokenizer = tiny_backbone.tokenizer
    trainer = TextualInversionTrainer(tiny_backbone, unique_token, INITIALIZER, num_vectors=3)
    ids = tokenizer.placeholder_tokens[unique_token]
    assert ids == list(range(tokenizer.vocabulary_size - 3, tokenizer.vocabulary_size))
    assert trainer.placeholder_token_ids == {unique_token: ids}
    row = tokenizer(f"a {unique_token}")[0]
    assert list(row[2:5]) == ids


@pytest.mark.parametrize("num_vectors", [1, 2, INITIALIZER_TOKENS])
def test_initial_vectors(tiny_backbone, unique_token, num_vectors):
    table = numpy(tiny_backbone.text_encoder.token_embedding.embeddings)
    word_ids = tiny_backbone.tokenizer.tokenize_words(INITIALIZER)
    assert len(word_ids) == INITIALIZER_TOKENS
    trainer = TextualInversionTrainer(tiny_backbone, unique_token, INITIALIZER, num_vectors)
    vectors = trainer.learned_vectors()[unique_token]
    if num_vectors == INITIALIZER_TOKENS:
        # One vector per initializer token, in order.
        np.testing.assert_allclose(vectors, table[word_ids], rtol=1e-6)
    else:
        mean = table[word_ids].mean(axis=0)
        np.testing.assert_allclose(vectors, np.tile(mean, (num_vectors, 1)), rtol=1e-5)
    np.testing.assert_allclose(trainer.initial_norms, np.linalg.norm(vectors, axis=-1), rtol=1e-5)


def test_several_placeholders_share_one_variable(tiny_backbone, unique_token):
    second = unique_token.replace(">", "-b>")
    trainer = TextualInversionTrainer(
        tiny_backbone, [unique_token, second], ["dog", "a red hat"], num_vectors=[2, 1]
    )
    assert tuple(trainer.new_vectors.shape) == (3, 32)
    vectors = trainer.learned_vectors()
    assert {k: v.shape for k, v in vectors.items()} == {unique_token: (2, 32), second: (1, 32)}
    norms = trainer.vector_norms()
    assert sorted(norms) == sorted([unique_token, f"{unique_token}_1", second])
    assert sorted(trainer.log_scalars()) == sorted(f"vector_norm/{name}" for name in norms)


def test_reusing_a_registered_placeholder(tiny_backbone, unique_token):
    TextualInversionTrainer(tiny_backbone, unique_token, INITIALIZER, num_vectors=2)
    size = tiny_backbone.tokenizer.vocabulary_size
    TextualInversionTrainer(tiny_backbone, unique_token, INITIALIZER, num_vectors=2)
    assert tiny_backbone.tokenizer.vocabulary_size == size
    with pytest.raises(ValueError, match="already has"):
        TextualInversionTrainer(tiny_backbone, unique_token, INITIALIZER, num_vectors=1)


@pytest.mark.parametrize(
    "tokens, words, num_vectors, message",
    [
        (["<x1>", "<x2>"], ["cat"], 1, "one initializer word"),
        ("<x3>", "cat", 0, "num_vectors"),
        ("a", "cat", 1, "new word"),
        ("<x4>", "", 1, "at least one token"),
        ("<x5>", "cat", 1, "not a placeholder"),
        (["<x6>", "<x6>"], ["cat", "dog"], 1, "must differ"),
    ],
)
def test_rejects_bad_arguments(tiny_backbone, unique_token, tokens, words, num_vectors, message):
    if message == "not a placeholder":
        TextualInversionTrainer(tiny_backbone, unique_token, INITIALIZER)
        words = f"a {unique_token}"
    size = tiny_backbone.tokenizer.vocabulary_size
    with pytest.raises(ValueError, match=message):
        TextualInversionTrainer(tiny_backbone, tokens, words, num_vectors)
    assert tiny_backbone.tokenizer.vocabulary_size == size


def test_config_round_trips_through_json(tiny_backbone, unique_token):
    trainer = TextualInversionTrainer(
        tiny_backbone, unique_token, INITIALIZER, num_vectors=2, min_snr_gamma=5.0,
        offset_noise=0.05, norm_regularization=0.1, seed=3,
    )
    config = json.loads(json.dumps(trainer.get_config()))
    assert config["backbone"] == "tiny"
    kwargs = {k: v for k, v in config.items() if k not in ("name", "backbone")}
    rebuilt = TextualInversionTrainer(tiny_backbone, **kwargs)
    assert {**rebuilt.get_config(), "name": None} == {**trainer.get_config(), "name": None}
    assert rebuilt.objective.get_config() == trainer.objective.get_config()


def test_call_accepts_moments_images_or_latents(tiny_backbone, unique_token):
    trainer = TextualInversionTrainer(tiny_backbone, unique_token, INITIALIZER, seed=0)
    rng = np.random.default_rng(0)
    token_ids = tiny_backbone.tokenizer([f"a photo of a {unique_token}"] * 2)
    inputs = {
        "moments": rng.standard_normal((2, 8, 8, 8)).astype("float32"),
        "images": rng.uniform(-1, 1, (2, 64, 64, 3)).astype("float32"),
        "latents": rng.standard_normal((2, 8, 8, 4)).astype("float32"),
    }
    for key, value in inputs.items():
        prediction, target, weights = trainer({"token_ids": token_ids, key: value})
        assert tuple(prediction.shape) == tuple(target.shape) == (2, 8, 8, 4), key
        assert tuple(weights.shape) == (2,)
    with pytest.raises(ValueError, match="token_ids"):
        trainer({"moments": inputs["moments"]})
    with pytest.raises(ValueError, match="one of"):
        trainer({"token_ids": token_ids, "pixels": inputs["images"]})


def test_loss_follows_the_models_prediction_type(tiny_backbone, unique_token):
    v_backbone = copy.copy(tiny_backbone)
    v_backbone.prediction_type = "v_prediction"
    trainer = TextualInversionTrainer(v_backbone, unique_token, INITIALIZER, min_snr_gamma=5.0)
    assert trainer.objective.prediction_type == "v_prediction"
    latents = np.random.default_rng(0).standard_normal((2, 8, 8, 4)).astype("float32")
    token_ids = tiny_backbone.tokenizer([unique_token] * 2)
    state = numpy(trainer.seed_generator.state).copy()
    _, target, weights = trainer({"token_ids": token_ids, "latents": latents})
    # The same draws, replayed: the target must be v, the weights min-SNR's.
    replay = keras.random.SeedGenerator(0)
    replay.state.assign(state)
    noisy, timesteps, v, expected_weights = trainer.objective.noisy_latents(latents, replay)
    np.testing.assert_allclose(numpy(target), numpy(v), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(numpy(weights), numpy(expected_weights), rtol=1e-5)
    assert not np.allclose(numpy(weights), 1.0)


def test_norm_regularization_pulls_toward_the_initial_norms(tiny_backbone, unique_token):
    trainer = TextualInversionTrainer(
        tiny_backbone, unique_token, INITIALIZER, num_vectors=2, norm_regularization=0.5
    )
    assert float(numpy(trainer.norm_penalty())) == pytest.approx(0.0, abs=1e-10)
    trainer.new_vectors.assign(numpy(trainer.new_vectors) * 2.0)
    norms = trainer.initial_norms
    assert float(numpy(trainer.norm_penalty())) == pytest.approx(float(np.mean(norms**2)), rel=1e-5)
    zeros = np.zeros((1, 8, 8, 4), "float32")
    loss = trainer.compute_loss(y_pred=(zeros, zeros + 1.0, np.ones((1,), "float32")))
    assert float(numpy(loss)) == pytest.approx(1.0 + 0.5 * float(np.mean(norms**2)), rel=1e-5)


def test_embedding_file_holds_the_learned_vectors(trained, tmp_path):
    from studio.embeddings import load_embedding

    trainer = trained[0]
    path = trainer.save_results(str(tmp_path), step=TRAIN_STEPS)
    assert os.path.basename(path) == EMBEDDING_FILE
    embedding = load_embedding(path)
    np.testing.assert_array_equal(embedding.vectors[TOKEN], trainer.learned_vectors()[TOKEN])
    assert embedding.steps == TRAIN_STEPS
    assert embedding.base_model == "tiny"
    assert embedding.initializer == INITIALIZER


def _jax_on_cpu():
    if keras.config.backend() != "jax":
        return False
    import jax

    return jax.devices()[0].platform == "cpu"


_NO_FLOAT16_ON_XLA_CPU = pytest.mark.skipif(
    _jax_on_cpu(),
    reason="XLA:CPU cannot compile float16 matmuls with float32 "
    "accumulation (GPUs can); tests/models skips it too",
)


# Keras' mixed policies, and the half-precision ones `studio train
# textual-inversion` builds its frozen networks in under them.
@pytest.fixture(
    scope="module",
    params=[
        "mixed_bfloat16",
        "bfloat16",
        pytest.param("mixed_float16", marks=_NO_FLOAT16_ON_XLA_CPU),
        pytest.param("float16", marks=_NO_FLOAT16_ON_XLA_CPU),
    ],
)
def mixed_trainer(request, make_batches, quick_compile_options):
    from studio.models import StableDiffusionBackbone

    keras.utils.set_random_seed(0)
    backbone = StableDiffusionBackbone.from_preset("tiny", dtype=request.param)
    trainer = TextualInversionTrainer(backbone, TOKEN, INITIALIZER, num_vectors=2, seed=1)
    trainer.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), **quick_compile_options)
    return trainer, make_batches(backbone.tokenizer, TOKEN)


def test_mixed_precision_keeps_vectors_and_loss_float32(mixed_trainer, snapshot_weights):
    trainer, batches = mixed_trainer
    before = snapshot_weights(trainer.backbone)
    initial = numpy(trainer.new_vectors).copy()
    history = fit(trainer, batches, 2)
    assert trainer.new_vectors.dtype == "float32"
    assert trainer.text_encoder.compute_dtype == trainer.precision.split("_")[1]
    policy = trainer.unet.dtype_policy.name
    assert trainer.precision == (policy if policy.startswith("mixed_") else f"mixed_{policy}")
    assert trainer.weights_dtype == ("float32" if policy.startswith("mixed_") else policy)
    assert trainer.text_encoder.token_embedding.embeddings.dtype == trainer.weights_dtype
    assert np.isfinite(history.history["step_loss"][-1])
    assert not np.array_equal(numpy(trainer.new_vectors), initial)
    after = snapshot_weights(trainer.backbone)
    for name in before:
        for old, new in zip(before[name], after[name]):
            np.testing.assert_array_equal(old, new)
    scaled = isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (trainer.precision == "mixed_float16")


def test_loss_scaling_skips_a_non_finite_step(mixed_trainer):
    trainer, batches = mixed_trainer
    if not trainer.uses_loss_scaling:
        pytest.skip("only mixed_float16 scales the loss")
    batch = next(batches)
    batch["moments"][0, 0, 0, 0] = np.nan
    before = numpy(trainer.new_vectors).copy()
    history = fit(trainer, iter([batch]), 1)
    assert not np.isfinite(history.history["step_loss"][-1])
    np.testing.assert_array_equal(numpy(trainer.new_vectors), before)
    history = fit(trainer, batches, 1)
    assert np.isfinite(history.history["step_loss"][-1])
    assert not np.array_equal(numpy(trainer.new_vectors), before)
