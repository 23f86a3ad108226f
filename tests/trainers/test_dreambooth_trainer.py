"""DreamBoothTrainer on the tiny preset: full and LoRA modes, prior loss, results (any backend).

Batches are NumPy dicts (no tf.data), so every test runs under JAX too.
"""

import keras
import numpy as np
import pytest

from studio.models import StableDiffusionBackbone
from studio.pipelines import TextToImagePipeline
from studio.trainers.dreambooth.dreambooth_text_embeddings import precompute_text_embeddings
from studio.trainers.dreambooth.dreambooth_trainer import (
    LORA_FILE,
    UNET_WEIGHTS_FILE,
    DreamBoothTrainer,
)
from studio.lora.lora_weights import LoRAWeights

INSTANCE_PROMPT = "a photo of sks dog"
CLASS_PROMPT = "a photo of a dog"
# The tiny preset: 64 px images, 8x8x4 latents.
LATENT_SHAPE = (8, 8, 4)
TRAIN_STEPS = 3
LORA_RANK = 4
LORA_LR = 1e-2
FULL_LR = 1e-3
SAMPLE_STEPS = 2


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def fresh_backbone():
    """The tiny preset with its seeded random weights: the same model every time."""
    return StableDiffusionBackbone.from_preset("tiny", seed=0)


def snapshot(backbone):
    return {
        name: [numpy(w).copy() for w in network.weights]
        for name, network in backbone.components.items()
    }


def dreambooth_batches(backbone, seed=0, count=None, text="token_ids", instances=1):
    """Batches of `instances` subject and as many class examples: moments and prompts."""
    rng = np.random.default_rng(seed)
    prompts = [INSTANCE_PROMPT] * instances + [CLASS_PROMPT] * instances
    token_ids = np.asarray(backbone.tokenizer(prompts))
    if text == "context":
        table, contexts = precompute_text_embeddings(backbone.text_encoder, token_ids)
        rows = [int(np.flatnonzero((table == row).all(-1))[0]) for row in token_ids]
        text_input = contexts[rows]
    else:
        text_input = token_ids
    batches = []
    while count is None or len(batches) < count:
        mean = rng.standard_normal((2 * instances, *LATENT_SHAPE))
        moments = np.concatenate([mean, np.full_like(mean, -2.0)], -1).astype("float32")
        batches.append({
            "moments": moments,
            text: text_input,
            "is_class_image": np.array([False] * instances + [True] * instances),
        })
        if count is None and len(batches) == 64:
            break
    return batches


def fit(trainer, batches, steps):
    return trainer.fit(
        ((batch,) for batch in batches), steps_per_epoch=steps, epochs=1, verbose=0
    )


def unet_inputs():
    rng = np.random.default_rng(42)
    return {
        "latents": rng.standard_normal((2, *LATENT_SHAPE)).astype("float32"),
        "timesteps": np.array([10, 700], "int32"),
        "context": rng.standard_normal((2, 77, 32)).astype("float32"),
    }


@pytest.fixture(scope="module")
def lora_run(quick_compile_options):
    """LoRA on UNet (attention and feed-forward) and text encoder, trained with prior preservation."""
    backbone = fresh_backbone()
    before = snapshot(backbone)
    trainer = DreamBoothTrainer(
        backbone, lora_rank=LORA_RANK, lora_feed_forward=True, train_text_encoder=True, seed=1
    )
    trainer.compile(optimizer=keras.optimizers.Adam(LORA_LR), **quick_compile_options)
    history = fit(trainer, dreambooth_batches(backbone), TRAIN_STEPS)
    getattr(trainer, "jax_state_sync", lambda: None)()
    return trainer, before, history


def test_lora_trains_only_lora_weights_and_keeps_every_base_weight(lora_run):
    trainer, before, history = lora_run
    assert np.all(np.isfinite(history.history["step_loss"]))
    trainable = trainer.trainable_variables
    assert trainable and all("lora_kernel" in v.path for v in trainable)
    # UNet attention + feed-forward (20 per transformer block, 4 blocks in
    # the tiny UNet) and text encoder (12 per layer, 2 layers).
    assert len(trainable) == 2 * (10 * 4 + 6 * 2)
    for variable in trainable:
        assert variable.dtype == "float32"
    lora_b = [v for v in trainable if v.path.endswith("lora_kernel_b")]
    # B starts at zero: every adapter moved.
    assert all(np.abs(numpy(v)).max() > 0 for v in lora_b)
    for name in before:
        # LoRA matrices are extra variables; the base ones come first in
        # each layer and keep their order.
        base_after = [
            numpy(w)
            for w in trainer.backbone.components[name].weights
            if "lora_kernel" not in w.path
        ]
        assert len(base_after) == len(before[name]) > 0
        for old, new in zip(before[name], base_after):
            assert old.dtype == new.dtype
            np.testing.assert_array_equal(old, new, err_msg=f"{name} changed")


@pytest.mark.usefixtures("eager_tensorflow")
def test_lora_file_reloads_into_a_fresh_pipeline_and_reproduces_the_trained_model(lora_run, tmp_path):
    trainer, _, _ = lora_run
    [path] = trainer.save_results(str(tmp_path), step=TRAIN_STEPS)
    assert path.endswith(LORA_FILE)
    weights = LoRAWeights.load(path)
    assert weights.metadata["ss_steps"] == str(TRAIN_STEPS)
    assert weights.metadata["ss_base_model_version"] == "sd_v1"
    assert len(weights.modules) == 10 * 4 + 6 * 2

    prompts = [INSTANCE_PROMPT]
    trained = TextToImagePipeline(trainer.backbone, jit_compile=False)(
        prompts, num_steps=SAMPLE_STEPS, seed=7
    )
    fresh = fresh_backbone()
    base = TextToImagePipeline(fresh, jit_compile=False)(prompts, num_steps=SAMPLE_STEPS, seed=7)
    expected_unet = numpy(trainer.backbone.unet(unet_inputs()))

    weights.apply(fresh, scale=0.0)
    at_zero = TextToImagePipeline(fresh, jit_compile=False)(prompts, num_steps=SAMPLE_STEPS, seed=7)
    np.testing.assert_array_equal(at_zero.images, base.images)

    weights.apply(fresh, scale=1.0)
    np.testing.assert_allclose(numpy(fresh.unet(unet_inputs())), expected_unet, atol=1e-5)
    reloaded = TextToImagePipeline(fresh, jit_compile=False)(prompts, num_steps=SAMPLE_STEPS, seed=7)
    assert np.abs(reloaded.images.astype(int) - trained.images.astype(int)).max() <= 1
    # Training changed the model's output.
    assert np.abs(expected_unet - numpy(fresh_backbone().unet(unet_inputs()))).max() > 1e-4


@pytest.fixture(scope="module")
def full_run(quick_compile_options):
    """Full UNet fine-tuning with a frozen text encoder and precomputed text embeddings."""
    backbone = fresh_backbone()
    before = snapshot(backbone)
    trainer = DreamBoothTrainer(backbone, seed=1)
    trainer.compile(optimizer=keras.optimizers.AdamW(FULL_LR), **quick_compile_options)
    history = fit(trainer, dreambooth_batches(backbone, text="context"), TRAIN_STEPS)
    getattr(trainer, "jax_state_sync", lambda: None)()
    return trainer, before, history


def test_full_mode_trains_the_unet_only(full_run):
    trainer, before, history = full_run
    assert np.all(np.isfinite(history.history["step_loss"]))
    assert len(trainer.trainable_variables) == len(trainer.unet.weights)
    after = snapshot(trainer.backbone)
    for name in ("text_encoder", "vae_encoder", "vae_decoder"):
        for old, new in zip(before[name], after[name]):
            np.testing.assert_array_equal(old, new, err_msg=f"{name} changed")
    changed = [not np.array_equal(old, new) for old, new in zip(before["unet"], after["unet"])]
    assert all(changed)


def test_full_mode_weights_reload_into_a_fresh_unet(full_run, tmp_path):
    trainer, _, _ = full_run
    [path] = trainer.save_results(str(tmp_path), step=TRAIN_STEPS)
    assert path.endswith(UNET_WEIGHTS_FILE)
    fresh = fresh_backbone()
    fresh.unet.load_weights(path)
    np.testing.assert_array_equal(
        numpy(fresh.unet(unet_inputs())), numpy(trainer.unet(unet_inputs()))
    )


@pytest.mark.parametrize("min_snr_gamma", [None, 5.0], ids=["plain", "min_snr"])
def test_loss_is_instance_loss_plus_weighted_prior_loss(min_snr_gamma):
    backbone = fresh_backbone()
    prior_loss_weight = 0.3
    trainer = DreamBoothTrainer(
        backbone, prior_loss_weight=prior_loss_weight, min_snr_gamma=min_snr_gamma, seed=3
    )
    rng = np.random.default_rng(0)
    batch = {
        "latents": rng.standard_normal((4, *LATENT_SHAPE)).astype("float32"),
        "token_ids": np.asarray(backbone.tokenizer([INSTANCE_PROMPT, CLASS_PROMPT] * 2)),
        "is_class_image": np.array([False, True, False, True]),
    }
    prediction, target, weights, is_class = (numpy(x) for x in trainer(batch))
    np.testing.assert_array_equal(is_class, [0, 1, 0, 1])
    if min_snr_gamma is None:
        np.testing.assert_array_equal(weights, np.ones(4))
    else:
        assert np.all((weights > 0) & (weights <= 1))
    # By hand: per-example mean squared error, weighted, averaged per half.
    per_example = ((prediction - target) ** 2).reshape(4, -1).mean(-1) * weights
    instance_loss = per_example[[0, 2]].mean()
    prior_loss = per_example[[1, 3]].mean()
    expected = instance_loss + prior_loss_weight * prior_loss
    loss = numpy(trainer.compute_loss(y_pred=(prediction, target, weights, is_class)))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(numpy(trainer.prior_loss.result()), prior_loss, rtol=1e-6)
    # The target is the noise (epsilon model): unrelated to the prediction
    # of an untrained model, so the loss is about 1 per element.
    assert 0.1 < float(loss) < 10.0
    # Without class examples the prior term is 0.
    no_class = np.zeros(4)
    alone = numpy(trainer.compute_loss(y_pred=(prediction, target, weights, no_class)))
    np.testing.assert_allclose(alone, per_example.mean(), rtol=1e-6)


def test_rematerialised_unet_trains_to_the_same_weights(quick_compile_options):
    """Recomputing activations changes memory, not results (and gradients reach every block).

    SGD, not Adam: Adam divides each gradient by its own running size, so an
    element whose gradient is near zero moves by about the learning rate
    whatever its float round-off, and the comparison would measure that
    round-off rather than remat. With SGD the weights move by the gradients
    themselves.
    """
    results = []
    for remat in (False, True):
        backbone = fresh_backbone()
        trainer = DreamBoothTrainer(backbone, lora_rank=LORA_RANK, remat=remat, seed=5)
        trainer.compile(optimizer=keras.optimizers.SGD(LORA_LR), **quick_compile_options)
        fit(trainer, dreambooth_batches(backbone, seed=2, text="context"), 2)
        getattr(trainer, "jax_state_sync", lambda: None)()
        results.append([numpy(v) for v in trainer.trainable_variables])
    for plain, rematerialised in zip(*results):
        assert np.abs(plain).max() > 0
        np.testing.assert_allclose(rematerialised, plain, rtol=1e-4, atol=1e-6)


def test_bad_arguments_are_refused():
    backbone = fresh_backbone()
    with pytest.raises(ValueError, match="prior_loss_weight"):
        DreamBoothTrainer(backbone, prior_loss_weight=-1.0)
    with pytest.raises(ValueError, match="lora_rank"):
        DreamBoothTrainer(backbone, lora_rank=0)
    with pytest.raises(ValueError, match="need `lora_rank`"):
        DreamBoothTrainer(backbone, lora_feed_forward=True)
    trainer = DreamBoothTrainer(backbone, train_text_encoder=True)
    batch = dreambooth_batches(backbone, count=1, text="context")[0]
    with pytest.raises(ValueError, match="cannot train the text encoder"):
        trainer(batch)
    with pytest.raises(ValueError, match="'token_ids' or 'context'"):
        trainer({"moments": batch["moments"]})


def test_config_round_trips_through_json():
    import json

    trainer = DreamBoothTrainer(fresh_backbone(), prior_loss_weight=0.5, lora_rank=2, seed=4)
    config = json.loads(json.dumps(trainer.get_config()))
    assert config["lora_rank"] == 2 and config["prior_loss_weight"] == 0.5
    assert config["backbone"] == "tiny"
    rebuilt = DreamBoothTrainer(fresh_backbone(), **{
        k: v for k, v in config.items() if k not in ("backbone",)
    })
    assert rebuilt.get_config() == config
