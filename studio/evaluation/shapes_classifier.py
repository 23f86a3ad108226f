"""A small CNN that reads a shapes-world image's attributes: the studio's judge of generated images."""

import os

import keras
import numpy as np
from keras import ops

from studio.datasets.shapes_world import ShapesWorld

# The attributes the classifier reads, and their classes in output order.
ATTRIBUTES = {
    "shape": ShapesWorld.SHAPES,
    "colour": tuple(ShapesWorld.COLOURS),
    "background": tuple(ShapesWorld.BACKGROUNDS),
    "pattern": ShapesWorld.PATTERNS,
}
# The shipped weights, in `studio.pretrained`.
PACKAGED_WEIGHTS_FILE = "shapes_classifier.weights.h5"


@keras.saving.register_keras_serializable(package="studio")
class ShapesClassifier(keras.Model):
    """Predicts shape, colour, background and pattern of 32 px shapes-world images.

    Three stride-2 convolution stages and one softmax head per attribute.
    It is trained on rendered images only (`train_shapes_classifier`), so
    it judges a generated image by the world's own rules, not by the model
    that made it.

    Args:
        image_size: side of the input images.
        width: channels of the first stage (doubled at each next one).
        **kwargs: `keras.Model` arguments.

    Call arguments:
        images: float `(batch, size, size, 3)` in `[0, 1]`.

    Returns:
        Dict attribute -> class probabilities `(batch, classes)`.

    Example:

    ```python
    classifier = ShapesClassifier.from_package()
    classifier.predict_attributes(uint8_images)  # {"shape": ["circle", ...], ...}
    ```
    """

    def __init__(self, image_size=32, width=32, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.width = width
        self.stages = [
            keras.layers.Conv2D(width * 2**i, 3, strides=2, padding="same", activation="relu",
                                name=f"conv_{i}")
            for i in range(3)
        ]
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.hidden = keras.layers.Dense(width * 4, activation="relu", name="hidden")
        self.heads = {
            name: keras.layers.Dense(len(classes), activation="softmax", name=name)
            for name, classes in ATTRIBUTES.items()
        }
        self.build((None, image_size, image_size, 3))

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.stages:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        # Average and max pooled features together: the max keeps small shapes' colour.
        self.hidden.build((None, 2 * shape[-1]))
        for head in self.heads.values():
            head.build((None, self.width * 4))
        self.built = True

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        for layer in self.stages:
            x = layer(x)
        x = ops.concatenate([ops.mean(x, axis=(1, 2)), ops.max(x, axis=(1, 2))], axis=-1)
        x = self.hidden(x)
        return {name: head(x) for name, head in self.heads.items()}

    def predict_attributes(self, images, batch_size=256):
        """Class names per attribute for uint8 images `(count, size, size, 3)`."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(
                f"Expected uint8 images of shape (count, {self.image_size}, "
                f"{self.image_size}, 3). Received: shape={images.shape}"
            )
        names = {name: [] for name in ATTRIBUTES}
        for start in range(0, len(images), batch_size):
            probabilities = self(images[start : start + batch_size].astype("float32") / 255.0)
            for name, classes in ATTRIBUTES.items():
                indices = np.argmax(ops.convert_to_numpy(probabilities[name]), axis=-1)
                names[name].extend(classes[i] for i in indices)
        return names

    @classmethod
    def from_package(cls):
        """The classifier shipped with the package (`studio/pretrained/`).

        Raises:
            FileNotFoundError: the weights file is missing from the install.
        """
        path = packaged_classifier_path()
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"The shapes classifier's weights are missing: {path}. Rebuild them with "
                "`studio train classifier --ship`. Received: no file"
            )
        classifier = cls()
        classifier.load_weights(path)
        return classifier

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "width": self.width}


def packaged_classifier_path():
    import studio.pretrained

    return os.path.join(os.path.dirname(os.path.abspath(studio.pretrained.__file__)),
                        PACKAGED_WEIGHTS_FILE)
