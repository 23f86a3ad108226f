"""Pixel ranges: uint8 images to the networks' [-1, 1] and back."""

import numpy as np

# The VAE sees pixels in [-1, 1]: uint8 value v becomes v / 127.5 - 1.
PIXEL_HALF_RANGE = 127.5


class ImagePreprocessor:
    """Owns the pixel range of the Stable Diffusion families' VAE.

    Stateless; one instance is `DiffusionBackbone.image_preprocessor`, and
    datasets use the class directly. `to_model_range` is plain arithmetic
    after a float32 cast, so it works on NumPy arrays, TensorFlow tensors
    inside `tf.data` and Keras tensors alike.

    Example:

    ```python
    pixels = ImagePreprocessor.to_model_range(uint8_images)  # float32 in [-1, 1]
    images = ImagePreprocessor.to_uint8(decoded)  # uint8 numpy
    ```
    """

    @staticmethod
    def to_model_range(images):
        """uint8 (or float) pixels in [0, 255] -> float32 in [-1, 1].

        Args:
            images: NumPy array, TensorFlow tensor or Keras tensor.

        Returns:
            The same kind of array or tensor, float32.
        """
        return _as_float32(images) / PIXEL_HALF_RANGE - 1.0

    @staticmethod
    def to_uint8(values):
        """Network output in [-1, 1] -> uint8 NumPy pixels, rounded and clipped.

        Args:
            values: float array or tensor in about [-1, 1].

        Returns:
            uint8 NumPy array of the same shape.
        """
        from keras import ops

        pixels = (np.asarray(ops.convert_to_numpy(values)) + 1.0) * PIXEL_HALF_RANGE
        return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def _as_float32(images):
    if isinstance(images, np.ndarray) or np.isscalar(images):
        return np.asarray(images).astype("float32")
    if type(images).__module__.startswith("tensorflow"):
        # A tensor of a `tf.data` pipeline: cast it with TensorFlow, which
        # the caller has already imported (`keras.ops` would convert it to
        # the Keras backend's type, which fails under JAX).
        import tensorflow as tf

        return tf.cast(images, tf.float32)
    from keras import ops

    return ops.cast(images, "float32")
