"""Trains the `ShapesClassifier` on rendered shapes-world images (`studio train classifier`)."""

import numpy as np

from studio.datasets.shapes_world import ShapesWorld
from studio.evaluation.shapes_classifier import ATTRIBUTES, ShapesClassifier

# Share of training images that show the striped pattern (any shape or colour).
STRIPED_RATE = 0.2
# Generated images are softer and noisier than rendered ones; the classifier
# trains on such versions too, so that it judges content, not sharpness.
BLUR_RATE = 0.5
NOISE_STD = 0.04
COLOUR_JITTER = 0.06


def classifier_examples(count, seed, image_size=32):
    """Rendered images in `[0, 1]` (augmented) and their class indices, from `seed`."""
    rng = np.random.default_rng(seed)
    world = ShapesWorld(image_size)
    images = np.empty((count, image_size, image_size, 3), np.float32)
    labels = {name: np.empty(count, np.int32) for name in ATTRIBUTES}
    for index in range(count):
        shape = ShapesWorld.SHAPES[rng.integers(len(ShapesWorld.SHAPES))]
        pattern = "striped" if rng.random() < STRIPED_RATE else "plain"
        scene = world.random_scene(rng, shape=shape, pattern=pattern)
        images[index] = world.render(scene) / 255.0
        for name, classes in ATTRIBUTES.items():
            labels[name][index] = classes.index(getattr(scene, name))
    blurred = (images + np.roll(images, 1, 1) + np.roll(images, -1, 1)
               + np.roll(images, 1, 2) + np.roll(images, -1, 2)) / 5
    pick = rng.random(count) < BLUR_RATE
    images[pick] = blurred[pick]
    images += rng.normal(0, NOISE_STD, images.shape).astype(np.float32)
    images *= (1 + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, (count, 1, 1, 3))).astype(np.float32)
    return np.clip(images, 0, 1), labels


def train_shapes_classifier(steps=1500, batch_size=64, seed=0, pool_size=12000):
    """Trains a `ShapesClassifier` from `seed`; returns it and its held-out accuracies."""
    import keras

    keras.utils.set_random_seed(seed)
    images, labels = classifier_examples(pool_size, seed)
    test_images, test_labels = classifier_examples(1000, seed + 1)
    classifier = ShapesClassifier()
    classifier.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss={name: "sparse_categorical_crossentropy" for name in ATTRIBUTES},
    )
    epochs = max(1, round(steps * batch_size / pool_size))
    classifier.fit(images, labels, batch_size=batch_size, epochs=epochs, verbose=2)
    predicted = classifier.predict_attributes((test_images * 255).round().astype(np.uint8))
    accuracy = {
        name: float(np.mean([p == classes[i] for p, i in zip(predicted[name], test_labels[name])]))
        for name, classes in ATTRIBUTES.items()
    }
    return classifier, accuracy
