"""Two training steps on one device and data parallel on two; prints how far they differ.

Run by test_data_parallel_step.py in a fresh interpreter (the devices are
fixed when the backend starts):

    KERAS_BACKEND=tensorflow python tests/trainers/data_parallel_step.py textual_inversion [--graph]
    XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax \\
        python tests/trainers/data_parallel_step.py dreambooth

Both runs start from the same tiny model (seeded random weights) and take
the same two global batches of 4 examples (2 per device); plain SGD, so
that a gradient twice too large (replicas' gradients summed, not averaged)
shows in the update, which Adam's first steps would hide. Prints one JSON
line: the largest difference of the trained weights and of the step
losses, and the size of the weights' change, for scale.
"""

import json
import sys

import keras
import numpy as np

from studio.models import StableDiffusionBackbone
from studio.trainers.distributed.data_parallel_devices import DataParallelDevices

DEVICES = 2
GLOBAL_BATCH = 4
STEPS = 2
LEARNING_RATE = 0.5
TOKEN = "<concept>"
# The tiny preset: 8x8x4 latents.
LATENT_SHAPE = (8, 8, 4)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def batches(tokenizer, prompts, is_class=None):
    """The run's global batches: token ids, VAE moments (sampled in the step)."""
    rng = np.random.default_rng(0)
    result = []
    for _ in range(STEPS):
        mean = rng.standard_normal((GLOBAL_BATCH, *LATENT_SHAPE))
        moments = np.concatenate([mean, np.full_like(mean, -2.0)], axis=-1).astype("float32")
        batch = {"token_ids": np.asarray(tokenizer(prompts)), "moments": moments}
        if is_class is not None:
            # 0/1 floats, as `studio train dreambooth --devices N` gives them:
            # Keras' tf.distribute build averages a batch, which bools cannot be.
            batch["is_class_image"] = np.asarray(is_class, "float32")
        result.append(batch)
    return result


def textual_inversion(devices):
    from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer

    with devices.scope():
        backbone = StableDiffusionBackbone.from_preset("tiny", seed=0)
        trainer = TextualInversionTrainer(
            backbone, TOKEN, "cat", num_vectors=2, min_snr_gamma=5.0, offset_noise=0.1,
            norm_regularization=0.1, seed=3,
        )
        compile_trainer(trainer, devices)
    prompts = [f"a photo of a {TOKEN}", f"a {TOKEN} on a table"] * (GLOBAL_BATCH // 2)
    return trainer, batches(backbone.tokenizer, prompts), lambda: [trainer.new_vectors]


def dreambooth(devices):
    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer

    with devices.scope():
        backbone = StableDiffusionBackbone.from_preset("tiny", seed=0)
        trainer = DreamBoothTrainer(
            backbone, prior_loss_weight=0.5, lora_rank=2, offset_noise=0.1, seed=3
        )
        compile_trainer(trainer, devices)
    # Subject examples first, as DreamBoothDataset lays them out: the first
    # device gets only subject examples, the second only class examples.
    half = GLOBAL_BATCH // 2
    prompts = ["a photo of sks dog"] * half + ["a photo of a dog"] * half
    data = batches(backbone.tokenizer, prompts, is_class=[False] * half + [True] * half)
    return trainer, data, lambda: trainer.trainable_weights


def compile_trainer(trainer, devices):
    # TensorFlow: eager steps (quickest for a tiny model, as conftest's
    # `quick_compile_options`) or, with --graph, the traced graph the
    # commands run. JAX: jit-compiled.
    if keras.config.backend() == "tensorflow":
        options = {"jit_compile": False} if "--graph" in sys.argv else {"run_eagerly": True}
    else:
        options = {"jit_compile": devices.jit_compile(True)}
    trainer.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), **options)


def train(build, devices):
    """The trained weights and the step losses of two steps."""
    trainer, data, trained_weights = build(devices)
    before = [numpy(w).copy() for w in trained_weights()]

    def tuples():
        for batch in data:
            yield (batch,)

    losses = []
    callback = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: losses.append(float(logs["step_loss"]))
    )
    trainer.fit(tuples(), steps_per_epoch=STEPS, epochs=1, shuffle=False, verbose=0,
                callbacks=[callback])
    after = [numpy(w).copy() for w in trained_weights()]
    return before, after, losses, copies(trained_weights()[0])


def copies(variable):
    """On how many devices `variable` lives: one per replica when data parallel."""
    if keras.config.backend() == "tensorflow":
        return len(getattr(variable.value, "values", [variable.value]))
    return len(variable.value.sharding.device_set)


def main(method):
    build = {"textual_inversion": textual_inversion, "dreambooth": dreambooth}[method]
    parallel = DataParallelDevices(DEVICES)
    if keras.config.backend() == "tensorflow":
        # TensorFlow's logical CPU devices are fixed when it starts; the
        # single-device run outside the strategy uses the first.
        parallel.setup()
        single = train(build, DataParallelDevices(1))
    else:
        # JAX's distribution is global: the single-device run comes first.
        single = train(build, DataParallelDevices(1))
        parallel.setup()
    split = train(build, parallel)
    (before, after, losses, _), (split_before, split_after, split_losses, copies) = single, split
    print(json.dumps({
        "devices": parallel.device_names,
        "variable_copies": copies,
        "initial_difference": max(float(np.abs(a - b).max()) for a, b in zip(before, split_before)),
        "weight_difference": max(float(np.abs(a - b).max()) for a, b in zip(after, split_after)),
        "weight_change": max(float(np.abs(a - b).max()) for a, b in zip(after, before)),
        "loss_difference": float(np.abs(np.subtract(losses, split_losses)).max()),
        "losses": losses,
        "split_losses": split_losses,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
