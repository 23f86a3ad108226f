"""DreamBooth LoRA under a mixed precision stores its frozen networks in half precision.

Issues #18 / #19, acceptance 5 (memory on a 16 GB T4): `studio train
dreambooth --lora-rank R --precision mixed_float16` loads the backbone of
SD 1.x, SD-XL and SD3 with its weights in float16, as diffusers' LoRA
scripts keep theirs in `weight_dtype`; only the LoRA matrices (and their
optimizer state) are float32, and the run still computes and scales its
loss as `mixed_float16`. The backbones and trainers come from the
command's own functions (`load_dreambooth_backbone`,
`build_dreambooth_trainer`).
"""

import keras
import numpy as np
import pytest
from keras import ops

from studio.errors import InvalidInputError
from studio.trainers import DreamBoothSettings
from studio.trainers.distributed.data_parallel_devices import DataParallelDevices
from studio.trainers.dreambooth.dreambooth_training import (
    build_dreambooth_trainer,
    load_dreambooth_backbone,
)

PROMPTS = ("a photo of sks toy", "a sks toy on a table")
LORA_RANK = 2


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def lora_settings(model, precision="mixed_float16", **options):
    options.setdefault("lora_rank", LORA_RANK)
    options.setdefault("instance_prompt", PROMPTS[0])
    return DreamBoothSettings(model=model, data="unused", precision=precision, seed=0,
                              **options)  # fmt: skip


def build(settings):
    """The backbone and compiled trainer `studio train dreambooth` builds for `settings`."""
    devices = DataParallelDevices()
    backbone = load_dreambooth_backbone(settings, devices)
    return backbone, build_dreambooth_trainer(settings, backbone, devices)


def is_float(variable):
    return "float" in str(variable.dtype)


def stored_bytes(variables):
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)


# Building each family's tiny backbone and trainer takes about a second
# under TensorFlow (tiny-sd3: keras-hub's classes, a few).
@pytest.fixture(scope="module", params=["tiny", "tiny-sdxl", "tiny-sd3"])
def mixed_lora(request):
    return build(lora_settings(request.param))


def test_frozen_weights_are_float16_and_lora_float32_with_loss_scaling(mixed_lora):
    backbone, trainer = mixed_lora
    trained = {id(v) for v in trainer.trainable_variables}
    assert trained and all(v.dtype == "float32" for v in trainer.trainable_variables)
    frozen_dtypes = {
        name: {str(v.dtype) for v in network.weights if is_float(v) and id(v) not in trained}
        for name, network in backbone.components.items()
    }
    assert frozen_dtypes == {name: {"float16"} for name in backbone.components}
    # Only LoRA matrices train: each adapted layer's pair, nothing else.
    assert all(v.path.endswith(("lora_kernel_a", "lora_kernel_b"))
               for v in trainer.trainable_variables)  # fmt: skip
    # The run is still a mixed_float16 one: float16 compute, loss scaling on.
    assert trainer.precision == "mixed_float16"
    assert trainer.weights_dtype == "float16"
    assert trainer.uses_loss_scaling
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)


# The byte-level tokenizers of tiny-sdxl and tiny-sd3 split every word.
@pytest.mark.filterwarnings("ignore:The initializer")
@pytest.mark.parametrize("model, second_encoder", [("tiny-sdxl", "text_encoder_2"),
                                                   ("tiny-sd3", "clip_g")])
def test_pivotal_tuning_trains_float32_token_rows_beside_the_lora(model, second_encoder):
    """SD-XL and SD3 pivotal tuning: the token's rows in both half-precision tables train in
    float32."""
    backbone, trainer = build(lora_settings(model, token="<halflora>", init_word="toy",
                                            instance_prompt="a photo of <halflora>"))
    rows = [trainer.placeholder_embedding[key].new_vectors for key in ("clip_l", "clip_g")]
    trained = list(trainer.trainable_variables)
    assert {id(v) for v in rows} < {id(v) for v in trained}
    assert all(v.dtype == "float32" for v in trained)
    assert {str(v.dtype) for v in getattr(backbone, second_encoder).weights} == {"float16"}
    assert trainer.precision == "mixed_float16" and trainer.uses_loss_scaling


def test_stored_weight_bytes_halve(mixed_lora):
    """The CPU proof of the memory forecast (benchmarks/BENCHMARKS.md): bytes of every variable."""
    backbone, trainer = mixed_lora
    weights = [v for network in backbone.components.values() for v in network.weights]
    lora = list(trainer.trainable_variables)
    lora_ids = {id(v) for v in lora}
    frozen = [v for v in weights if id(v) not in lora_ids]
    # What the same networks weigh under the mixed policy (float32 variables).
    as_float32 = 4 * sum(int(np.prod(v.shape)) for v in frozen if is_float(v))
    half = stored_bytes([v for v in frozen if is_float(v)])
    assert half * 2 == as_float32
    total = stored_bytes(weights)
    # The LoRA matrices (rank 2 on tiny networks) are the rest.
    assert total - stored_bytes([v for v in frozen if not is_float(v)]) == half + stored_bytes(lora)
    assert stored_bytes(lora) < 0.1 * half


def test_full_fine_tuning_keeps_float32_weights_and_refuses_half_ones(mixed_lora):
    backbone, _ = mixed_lora
    if backbone.family == "sd3":
        # SD3 DreamBooth is LoRA only: a full run never gets a backbone.
        with pytest.raises(InvalidInputError, match="SD3 DreamBooth trains LoRA"):
            load_dreambooth_backbone(lora_settings(backbone.name, lora_rank=None),
                                     DataParallelDevices())
        return
    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer

    with pytest.raises(InvalidInputError, match="Full fine-tuning needs the UNet's weights in "
                                                "float32.*Received: .* float16"):
        DreamBoothTrainer(backbone, lora_rank=None)
    full = load_dreambooth_backbone(lora_settings(backbone.name, lora_rank=None),
                                    DataParallelDevices())
    assert {str(v.dtype) for v in full.unet.weights} == {"float32"}
    assert full.unet.dtype_policy.name == "mixed_float16"


def test_resuming_a_run_written_with_float32_frozen_weights(tmp_path):
    """A mixed LoRA run of before this change resumes: its checkpoint holds only what trains.

    Its checkpoints hold the LoRA matrices, the optimizer's variables (loss
    scale included) and the seed state, all float32 then as now; the
    frozen weights are not in them (they never change), and a random preset
    is drawn with NumPy, so the new run's frozen weights are the old ones
    rounded to float16.
    """
    from studio.trainers.run.training_checkpoint import TrainingCheckpoint
    from studio.trainers.run_setup import load_backbone

    settings = lora_settings("tiny")
    devices = DataParallelDevices()
    # The old code path: the backbone under Keras' mixed policy.
    old_backbone = load_backbone(settings, devices, frozen=False)
    old = build_dreambooth_trainer(settings, old_backbone, devices)
    assert old.weights_dtype == "float32"
    rng = np.random.default_rng(0)
    for variable in old.trainable_variables:
        variable.assign(rng.standard_normal(variable.shape).astype("float32"))
    checkpoints = TrainingCheckpoint(tmp_path)
    checkpoints.save(old, step=3)

    backbone, new = build(settings)
    checkpoints.restore(new)
    for saved, restored in zip(old.trainable_variables, new.trainable_variables):
        assert restored.dtype == "float32"
        np.testing.assert_array_equal(numpy(restored), numpy(saved))
    assert float(numpy(new.optimizer.dynamic_scale)) == float(numpy(old.optimizer.dynamic_scale))
    # The same layers in the same order (both have LoRA): compare by position.
    for old_weight, weight in zip(old_backbone.unet.weights, backbone.unet.weights):
        assert old_weight.shape == weight.shape
        if weight.dtype == "float16":
            np.testing.assert_array_equal(numpy(weight), numpy(old_weight).astype("float16"))


def _jax_on_cpu():
    if keras.config.backend() != "jax":
        return False
    import jax

    return jax.devices()[0].platform == "cpu"


CLOSE_STEPS = 2
SGD_RATE = 0.1
LATENT_SIZE = 8


@pytest.mark.skipif(_jax_on_cpu(), reason="XLA:CPU cannot compile float16 matmuls with "
                    "float32 accumulation (GPUs can)")  # fmt: skip
def test_a_few_mixed_steps_stay_close_to_the_float32_run(quick_compile_options):
    from studio.trainers.dreambooth.dreambooth_training import build_optimizer

    rng = np.random.default_rng(0)
    latents = [rng.standard_normal((2, LATENT_SIZE, LATENT_SIZE, 4)).astype("float32")
               for _ in range(CLOSE_STEPS)]  # fmt: skip
    runs = {}
    for precision in ("float32", "mixed_float16"):
        # SGD: each update is the gradient times the rate, so the updates
        # compare the two runs' gradients (Adam's first steps are their signs).
        settings = lora_settings("tiny", precision=precision, optimizer="sgd", lr=SGD_RATE)
        backbone, trainer = build(settings)
        trainer.compile(optimizer=build_optimizer(settings), **quick_compile_options)
        start = [numpy(v).copy() for v in trainer.trainable_variables]
        losses = []
        for batch_latents in latents:
            logs = trainer.train_on_batch(
                {"token_ids": backbone.tokenizer(list(PROMPTS)), "latents": batch_latents},
                return_dict=True)
            losses.append(float(logs["step_loss"]))
        getattr(trainer, "jax_state_sync", lambda: None)()
        # Every step applied: none skipped by the loss scale.
        assert int(numpy(trainer.optimizer.iterations)) == CLOSE_STEPS
        updates = np.concatenate([(numpy(v) - s).ravel()
                                  for v, s in zip(trainer.trainable_variables, start)])
        runs[precision] = np.array(losses), updates
    (losses, updates), (mixed_losses, mixed_updates) = runs["float32"], runs["mixed_float16"]
    assert np.linalg.norm(updates) > 0
    # float16 rounds each value to 2**-11 ~ 4.9e-4 relative. The losses may
    # differ by 10 such roundings (5e-3), the updates (the gradients,
    # through the backward pass as well, unscaled from the loss scale) by
    # 40 (2e-2). Measured (TensorFlow, 2-core CPU): at most 2.3e-4 on the
    # losses, 1.7e-3 on the updates. A wrong cast (the LoRA delta lost in
    # the half kernel, gradients left scaled) is off by far more.
    np.testing.assert_allclose(mixed_losses, losses, rtol=5e-3)
    assert np.linalg.norm(mixed_updates - updates) <= 2e-2 * np.linalg.norm(updates)


@pytest.mark.skipif(_jax_on_cpu(), reason="XLA:CPU cannot compile float16 matmuls with "
                    "float32 accumulation (GPUs can)")  # fmt: skip
def test_sd3_clip_lora_trains_in_float32_over_half_precision_clip_kernels():
    """SD3 `--train-text-encoder`: CLIP's MultiHeadAttention kernels stay float16 under a float32 LoRA."""
    from studio.trainers.dreambooth.dreambooth_training import build_optimizer

    settings = lora_settings("tiny-sd3", train_text_encoder=True)
    backbone, trainer = build(settings)
    # Traced without XLA: the quickest start of keras-hub's networks here.
    trainer.compile(optimizer=build_optimizer(settings), jit_compile=False)
    query = backbone.clip_g.encoder_layers[0].attention._query_dense
    clip_lora = [v for v in trainer.trainable_variables if v.path.startswith(("clip_l", "clip_g"))]
    assert clip_lora and all(v.dtype == "float32" for v in clip_lora)
    assert str(query._kernel.dtype) == "float16"
    token_ids = np.asarray(backbone.tokenizer(list(PROMPTS)))
    latents = np.random.default_rng(0).normal(size=(len(PROMPTS), 8, 8, 16)).astype("float32")
    loss = trainer.train_on_batch({"latents": latents, "token_ids": token_ids}, return_dict=True)
    assert np.isfinite(loss["loss"])
    assert all(np.abs(numpy(v)).max() > 0 for v in clip_lora if v.path.endswith("lora_kernel_b"))
