"""`weights_id(network)`: the latent cache's key of an encoder's weights."""

import hashlib


def weights_id(network):
    """A short id of a network's weights and dtype policy (the latent cache's key).

    Hashing the weights themselves (a fraction of a second for SD's VAE
    encoder) keeps random-weight presets and saved folders apart without
    trusting file names.
    """
    import keras

    digest = hashlib.sha256(network.dtype_policy.name.encode("utf-8"))
    for weight in network.weights:
        digest.update(keras.ops.convert_to_numpy(weight).tobytes())
    return f"{network.name}-{digest.hexdigest()[:16]}"
