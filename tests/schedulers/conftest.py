"""Fixtures for the sampler tests: reference tables and diffusers' dummies.

The reference tables are written out here from the formulas, not taken
from `studio.schedulers`, so the tests check the code against them.
"""

import keras
import numpy as np
import pytest

SD_SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
)
# diffusers' scheduler tests use DDPM's linear betas.
DIFFUSERS_TEST_SCHEDULE = dict(
    num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear"
)


def reference_alphas_cumprod(beta_start, beta_end, num_train_timesteps, beta_schedule):
    if beta_schedule == "scaled_linear":
        betas = np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps) ** 2
    else:
        betas = np.linspace(beta_start, beta_end, num_train_timesteps)
    return np.cumprod(1.0 - betas)


@pytest.fixture
def sd_alphas_cumprod():
    return reference_alphas_cumprod(**SD_SCHEDULE)


@pytest.fixture
def to_numpy():
    return lambda x: np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _deterministic(flip):
    # diffusers' `dummy_sample_deter` / `dummy_noise_deter`: arange over
    # (channels, height, width, batch), scaled to [0, 1), moved to batch first.
    count = 4 * 3 * 8 * 8
    values = np.arange(count)[::-1] if flip else np.arange(count)
    values = values.reshape(3, 8, 8, 4) / count
    return np.transpose(values, (3, 0, 1, 2)).astype(np.float32)


@pytest.fixture
def dummy_sample_deter():
    return _deterministic(flip=False)


@pytest.fixture
def dummy_noise_deter():
    return _deterministic(flip=True)


@pytest.fixture
def dummy_model():
    """diffusers' `dummy_model`: `sample * t / (t + 1)`."""

    def model(sample, timestep):
        timestep = float(timestep)
        return (np.asarray(sample, np.float64) * timestep / (timestep + 1)).astype(
            np.float32
        )

    return model


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def compile_function():
    """Compiles a function of tensors with the backend's compiler."""
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return jax.jit
    if backend == "tensorflow":
        import tensorflow as tf

        return lambda fn: tf.function(fn, jit_compile=True)
    pytest.skip(f"no compiler wired for backend {backend}")


@pytest.fixture
def diffusers_test_schedule():
    return dict(DIFFUSERS_TEST_SCHEDULE)
