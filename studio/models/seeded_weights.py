"""Random initial weights drawn with NumPy from a seed: the same on every backend.

Keras initializers draw from the backend's random generator, so one seed
gives one model under TensorFlow and another under JAX. A random preset
(`tiny`) must be one model everywhere (embeddings, LoRAs and runs made on it
move between backends), so its random variables are drawn again here, each
from a NumPy generator seeded by (seed, network, variable): the same bits on
every backend and in every process.
"""

import math
import zlib

import numpy as np

# Keras' "uniform" initializer, which embedding tables use (token and
# position embeddings).
EMBEDDING_INIT_RANGE = 0.05
EMBEDDINGS_NAME = "embeddings"


def set_seeded_random_weights(network, seed, network_name):
    """Redraws every random float variable of `network` with NumPy.

    Constant-initialised variables (biases, norm scales and offsets, moving
    statistics) are the same on every backend and stay as built. Embedding
    tables get Keras' "uniform" (-0.05, 0.05); every other random variable
    (kernels) Glorot-uniform, Keras' default for dense and convolution
    kernels, with the same fans.

    Args:
        network: a built Keras model.
        seed: an int.
        network_name: names the network in the seed ("unet", ...), so two
            networks of the same shapes are not drawn alike.
    """
    stream = zlib.crc32(network_name.encode("utf-8"))
    for index, variable in enumerate(network.weights):
        if not np.issubdtype(np.dtype(variable.dtype), np.floating):
            continue
        built = np.asarray(variable.numpy())
        if built.size == 0 or built.min() == built.max():
            continue
        # The variable's position, not its path: Keras numbers unnamed
        # layers per process, so paths depend on what was built before.
        generator = np.random.default_rng([seed, stream, index])
        if variable.path.rsplit("/", 1)[-1] == EMBEDDINGS_NAME:
            limit = EMBEDDING_INIT_RANGE
        else:
            fan_in, fan_out = _fans(built.shape)
            limit = math.sqrt(6.0 / (fan_in + fan_out))
        # float32 draws: half the memory of float64 for a full-size network.
        values = generator.random(built.shape, dtype=np.float32)
        values = (values * np.float32(2 * limit) - np.float32(limit)).astype(built.dtype)
        variable.assign(values)


def _fans(shape):
    """Keras' `compute_fans`: (fan_in, fan_out) of a kernel shape."""
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field
