"""LoRA on tiny-sd3's MMDiT with flow matching: the loss falls, and only LoRA matrices move."""

import keras
import numpy as np
import pytest
from keras import ops

from studio.lora.sd3_lora_targets import mmdit_lora_targets
from studio.models.sd3 import SD3Backbone
from studio.trainers.dreambooth.sd3_lora_trainer import SD3LoRATrainer


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def test_targets_are_sd3_modules_with_the_last_context_block_trimmed():
    backbone = SD3Backbone.from_preset("tiny-sd3")
    attention = mmdit_lora_targets(backbone.mmdit)
    assert list(attention) == [
        "joint_blocks.0.x_block.attn.qkv", "joint_blocks.0.x_block.attn.proj",
        "joint_blocks.0.context_block.attn.qkv", "joint_blocks.0.context_block.attn.proj",
        "joint_blocks.1.x_block.attn.qkv", "joint_blocks.1.x_block.attn.proj",
        "joint_blocks.1.context_block.attn.qkv",
    ]  # fmt: skip
    with_mlp = mmdit_lora_targets(backbone.mmdit, mlp=True)
    assert len(with_mlp) == 7 + 6 and "joint_blocks.1.x_block.mlp.fc2" in with_mlp
    assert all(isinstance(layer, keras.layers.Dense) for layer in with_mlp.values())

    # The trainer trains exactly the targets' LoRA matrices.
    trainer = SD3LoRATrainer(backbone, lora_rank=2, seed=0)
    lora = {id(v) for layer in attention.values() for v in (layer.lora_kernel_a, layer.lora_kernel_b)}
    assert {id(v) for v in trainer.trainable_variables} == lora
    assert trainer.objective.weighting_scheme == "logit_normal"




def test_text_encoder_lora_trains_clip_l_and_g_with_the_mmdit_and_nothing_else():
    backbone = SD3Backbone.from_preset("tiny-sd3")
    trainer = SD3LoRATrainer(backbone, lora_rank=2, seed=0, train_text_encoder=True)
    trainer.compile(optimizer=keras.optimizers.SGD(1.0), jit_compile=False)
    networks = (backbone.mmdit, backbone.clip_l, backbone.clip_g, backbone.vae)
    before = {v.path: numpy(v).copy() for network in networks for v in network.weights}
    trained = {v.path for v in trainer.trainable_variables}
    # The MMDiT's 7 attention modules and 4 per CLIP layer (q, k, v, out), a and b each.
    clip = {path for path in trained if path.startswith(("clip_l", "clip_g"))}
    assert len(trained) == 2 * 7 + len(clip) and len(clip) == 2 * 2 * 4 * 2
    assert all(path.endswith(("lora_kernel_a", "lora_kernel_b")) for path in trained)

    rng = np.random.default_rng(0)
    token_ids = np.asarray(backbone.tokenizer(["a sks dog", "a sks dog on grass"]))
    latents = rng.normal(size=(2, 8, 8, 16)).astype("float32")
    trainer.train_on_batch({"latents": latents, "token_ids": token_ids})
    changed = {v.path for network in networks for v in network.weights
               if not np.array_equal(numpy(v), before[v.path])}  # fmt: skip
    # B starts at zero, so a step moves every B; A moves where B was non-zero.
    assert {p for p in clip if p.endswith("lora_kernel_b")} <= changed <= trained
    assert trainer.get_config()["train_text_encoder"] is True

    cached = {key: numpy(value) for key, value in backbone.encode_text(token_ids).items()}
    with pytest.raises(ValueError, match="Cached 'context' cannot train CLIP-L/G"):
        trainer({"latents": latents, **cached})


# About 30 s on 2 shared cores, most of it tracing the train step once.
@pytest.mark.parametrize("dtype, precision", [("float32", "float32"),
                                               ("mixed_float16", "mixed_float16")])
def test_precision_is_the_adapted_layers_not_the_mmdit_models(dtype, precision):
    """keras-hub's MMDiT model says "float32" under any policy; its layers know."""
    backbone = SD3Backbone.from_preset("tiny-sd3", dtype=dtype)
    trainer = SD3LoRATrainer(backbone, lora_rank=2, seed=0)
    assert (trainer.precision, trainer.weights_dtype) == (precision, "float32")
    # Loss scaling follows: float16 gradients of small losses underflow without it.
    assert trainer.uses_loss_scaling == (precision == "mixed_float16")


@pytest.mark.large
def test_steps_lower_the_loss_and_change_only_lora_weights():
    backbone = SD3Backbone.from_preset("tiny-sd3")
    trainer = SD3LoRATrainer(backbone, lora_rank=4, lora_mlp=True, seed=1,
                             weighting_scheme="none")  # fmt: skip
    trainer.compile(optimizer=keras.optimizers.Adam(2e-2), jit_compile=False)
    rng = np.random.default_rng(0)
    token_ids = np.asarray(backbone.tokenizer(["a sks dog", "a sks dog on grass"]))
    # Cached text embeddings, as DreamBooth LoRA on SD3 trains.
    cached = backbone.encode_text(token_ids)
    batch = {"latents": rng.normal(size=(2, 8, 8, 16)).astype("float32"),
             **{key: numpy(value) for key, value in cached.items()}}  # fmt: skip
    lora = {id(v) for layer in trainer.lora_targets.values()
            for v in (layer.lora_kernel_a, layer.lora_kernel_b)}  # fmt: skip
    networks = (backbone.mmdit, backbone.clip_l, backbone.clip_g, backbone.vae)
    assert {id(v) for v in trainer.trainable_variables} == lora
    before = {id(v): numpy(v).copy() for network in networks for v in network.weights}

    def fixed_loss():
        # The same noise and timesteps each time: only the weights differ.
        noisy, timesteps, target, weights = trainer.objective.noisy_latents(
            batch["latents"], keras.random.SeedGenerator(5)
        )
        prediction = backbone.denoise(noisy, timesteps, cached)
        return float(numpy(trainer.objective.loss(prediction, target, weights)))

    start = fixed_loss()
    for _ in range(15):
        trainer.train_on_batch(batch)
    end = fixed_loss()
    print("fixed-batch loss", start, end)
    assert end < 0.9 * start, (start, end)

    changed = {
        id(v) for network in networks for v in network.weights
        if not np.array_equal(numpy(v), before[id(v)])
    }  # fmt: skip
    assert changed and changed <= lora


# About 40 s on 2 shared cores (two train steps traced): CI's `large` step.
@pytest.mark.large
def test_remat_checkpoints_every_joint_block_and_changes_no_update(monkeypatch):
    calls = []
    remat = keras.remat

    def counting_remat(function):
        calls.append(function)
        return remat(function)

    monkeypatch.setattr(keras, "remat", counting_remat)
    batch, updates = None, {}
    for rematerialize in (False, True):
        backbone = SD3Backbone.from_preset("tiny-sd3")
        trainer = SD3LoRATrainer(backbone, lora_rank=2, seed=3, remat=rematerialize)
        trainer.compile(optimizer=keras.optimizers.SGD(1.0), jit_compile=True)
        if batch is None:
            rng = np.random.default_rng(0)
            cached = backbone.encode_text(np.asarray(backbone.tokenizer(["a sks dog"] * 2)))
            batch = {"latents": rng.normal(size=(2, 8, 8, 16)).astype("float32"),
                     **{key: numpy(value) for key, value in cached.items()}}  # fmt: skip
        calls.clear()
        trainer.train_on_batch(batch)
        # Each joint block went through `keras.remat` in the traced step
        # (and in any shape-only call Keras made first).
        if rematerialize:
            assert len(calls) >= len(backbone.mmdit.joint_blocks)
        else:
            assert not calls
        updates[rematerialize] = [
            numpy(layer.lora_kernel_b) for layer in trainer.lora_targets.values()
        ]
    for plain, rematerialized in zip(updates[False], updates[True]):
        assert np.abs(plain).max() > 0
        np.testing.assert_allclose(rematerialized, plain, rtol=1e-4, atol=1e-7)
    assert trainer.get_config()["remat"] is True
