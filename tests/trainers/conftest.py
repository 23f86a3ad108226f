"""Shared fixtures of the trainer tests: one tiny backbone, batches of VAE moments.

Building a backbone costs little under TensorFlow but many seconds under
JAX, so the tests share one per session. Trainers never write its
weights; they add placeholder tokens to its tokenizer, so each test uses
its own placeholder (`unique_token`) unless it means to reuse one.
"""

import itertools

import keras
import numpy as np
import pytest

# The tiny preset: 64 px images, 8x8x4 latents, 32-wide text vectors.
LATENT_SIZE = 8
LATENT_CHANNELS = 4
BATCH_SIZE = 2
PROMPTS = ("a photo of a {}", "a {} on a table")

_token_counter = itertools.count()


@pytest.fixture(scope="session")
def tiny_backbone():
    from studio.models import StableDiffusionBackbone

    keras.utils.set_random_seed(0)
    return StableDiffusionBackbone.from_preset("tiny")


@pytest.fixture
def unique_token():
    """A placeholder no other test has registered in the shared tokenizer."""
    return f"<concept{next(_token_counter)}>"


@pytest.fixture(scope="session")
def snapshot_weights():
    """`snapshot(backbone)` -> copies of every network weight, by network."""
    return _frozen_weights


@pytest.fixture(scope="session")
def make_batches():
    """`make_batches(tokenizer, token, seed=0, ...)` -> endless batches of moments."""
    return _moment_batches


def _frozen_weights(backbone):
    """Copies of every network weight of `backbone`, by network."""
    return {
        name: [np.array(keras.ops.convert_to_numpy(w)) for w in network.weights]
        for name, network in backbone.components.items()
    }


def _moment_batches(tokenizer, token, seed=0, batch_size=BATCH_SIZE, log_variance=-2.0):
    """An endless generator of batches: token ids and random VAE moments."""
    rng = np.random.default_rng(seed)
    prompts = [template.format(token) for template in PROMPTS]
    while True:
        chosen = [prompts[i] for i in rng.integers(0, len(prompts), batch_size)]
        mean = rng.standard_normal((batch_size, LATENT_SIZE, LATENT_SIZE, LATENT_CHANNELS))
        moments = np.concatenate([mean, np.full_like(mean, log_variance)], axis=-1)
        yield {"token_ids": tokenizer(chosen), "moments": moments.astype("float32")}


@pytest.fixture(scope="session")
def quick_compile_options():
    """`compile` options for the quickest start of a tiny model's training.

    TensorFlow takes many seconds to trace (and more to XLA-compile) the
    tiny model's train step, and runs it eagerly in a fraction of a
    second; JAX runs op by op very slowly, but jit-compiles in seconds.
    Compiled TensorFlow steps are tested on their own
    (test_compiled_training_step; its XLA case is marked large).
    """
    if keras.config.backend() == "tensorflow":
        return {"run_eagerly": True}
    return {"jit_compile": True}


@pytest.fixture(scope="session")
def eager_compile(quick_compile_options):
    """`eager_compile(monkeypatch, *trainer_classes)`: their `compile` takes the quick options.

    A command's or a pipeline's few train steps then run eagerly (TensorFlow)
    or jit-compiled (JAX): tracing costs more than the steps. What `compile`
    does with `jit_compile` is tested in test_textual_inversion_trainer.py.
    """

    def patch(monkeypatch, *trainers):
        for trainer in trainers:
            def compile(self, *args, original=trainer.compile, **kwargs):
                kwargs.pop("jit_compile", None)
                original(self, *args, **kwargs, **quick_compile_options)

            monkeypatch.setattr(trainer, "compile", compile)

    return patch


@pytest.fixture(scope="session")
def write_toy_images():
    """`write_toy_images(folder, count, size, prefix="toy")`: random RGB PNGs, the same every run."""

    def write(folder, count, size, prefix="toy"):
        from PIL import Image

        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for index in range(count):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{prefix}{index}.png")
        return folder

    return write
