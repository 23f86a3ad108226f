"""Latents from the VAE encoder's moments: the one implementation of moments -> sample -> scale."""

from keras import ops

# diffusers and the SD VAE clamp the log-variance to this range before
# sampling, so that a broken encoder output cannot produce inf latents.
LOG_VARIANCE_RANGE = (-30.0, 20.0)


def split_moments(moments):
    """The mean and clamped log-variance of VAE moments, in float32.

    Args:
        moments: float tensor `(batch, h, w, 2 * channels)`: the mean, then
            the log-variance, as the VAE encoder returns and the latent cache
            stores them.

    Returns:
        `(mean, log_variance)`, float32 tensors `(batch, h, w, channels)`;
        the log-variance clamped to `LOG_VARIANCE_RANGE`.
    """
    mean, log_variance = ops.split(ops.cast(moments, "float32"), 2, axis=-1)
    return mean, ops.clip(log_variance, *LOG_VARIANCE_RANGE)


def sample_latents(moments, noise=None, scale=1.0):
    """Draws latents from VAE moments and scales them for the denoiser.

    The caller gives the noise, so each caller keeps its own random state:
    a trainer draws from its `keras.random.SeedGenerator` (one replica's
    rows of the global batch), a pipeline from per-image NumPy generators.

    Args:
        moments: float tensor `(batch, h, w, 2 * channels)`.
        noise: None (the mean, no sampling), a float tensor broadcastable
            to the mean's shape `(batch, h, w, channels)`, or a function
            `shape -> tensor` called once with that shape.
        scale: float, the factor from VAE latents to the denoiser's latents.

    Returns:
        float32 `(mean + exp(log_variance / 2) * noise) * scale`.
    """
    mean, log_variance = split_moments(moments)
    if noise is None:
        return mean * scale
    if callable(noise):
        noise = noise(ops.shape(mean))
    return reparameterize(mean, log_variance, noise) * scale


def reparameterize(mean, log_variance, noise):
    """`mean + exp(log_variance / 2) * noise`: a latent drawn differentiably."""
    return mean + ops.exp(0.5 * log_variance) * ops.cast(noise, "float32")
