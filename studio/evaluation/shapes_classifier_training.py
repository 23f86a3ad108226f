"""Trains the `ShapesClassifier` on rendered shapes-world images (`studio train classifier`)."""

import numpy as np

from studio.datasets.shapes_world import ShapesWorld
from studio.evaluation.shapes_classifier import ATTRIBUTES, ShapesClassifier

# Share of training images that show the striped pattern (any shape or colour).
STRIPED_RATE = 0.2
# Generated images are softer, noisier and less regular than rendered ones;
# the classifier trains on such versions too, so that it judges content,
# not sharpness: a blur of random strength, a smooth random warp that bends
# straight edges and stripes by up to WARP_PIXELS, noise and colour jitter.
# (Hand-written in NumPy: a few vectorised lines, no image library needed.)
BLUR_RATE = 0.7
MAX_BLUR_SIGMA = 1.2
WARP_RATE = 0.7
WARP_PIXELS = 1.5
WARP_GRID = 4
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
    pick = rng.random(count) < WARP_RATE
    images[pick] = _warp(images[pick], rng)
    pick = rng.random(count) < BLUR_RATE
    images[pick] = _blur(images[pick], rng.uniform(0.3, MAX_BLUR_SIGMA, pick.sum()))
    images += rng.normal(0, NOISE_STD, images.shape).astype(np.float32)
    images *= (1 + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, (count, 1, 1, 3))).astype(np.float32)
    return np.clip(images, 0, 1), labels


def _blur(images, sigmas):
    """Gaussian blur of each image with its own sigma (separable, edge-padded)."""
    radius = int(np.ceil(3 * max(sigmas, default=0)))
    if radius == 0:
        return images
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    kernels = np.exp(-0.5 * (offsets[None, :] / sigmas[:, None]) ** 2)
    kernels /= kernels.sum(axis=1, keepdims=True)
    for axis in (1, 2):
        padded = np.pad(images, [(0, 0)] + [(radius, radius) if a == axis else (0, 0)
                                            for a in (1, 2)] + [(0, 0)], mode="edge")
        size = images.shape[axis]
        images = sum(
            kernels[:, k, None, None, None] * np.take(padded, np.arange(k, k + size), axis=axis)
            for k in range(2 * radius + 1)
        )
    return images.astype(np.float32)


def _warp(images, rng):
    """Resamples each image through a smooth random displacement field (bilinear)."""
    count, size = images.shape[0], images.shape[1]
    coarse = rng.uniform(-WARP_PIXELS, WARP_PIXELS, (count, 2, WARP_GRID, WARP_GRID))
    # Bilinear upsampling of the coarse field to every pixel.
    position = np.linspace(0, WARP_GRID - 1, size)
    low = np.minimum(np.floor(position).astype(int), WARP_GRID - 2)
    frac = (position - low).astype(np.float32)
    rows = coarse[:, :, low] * (1 - frac)[None, None, :, None] \
        + coarse[:, :, low + 1] * frac[None, None, :, None]
    field = rows[..., low] * (1 - frac) + rows[..., low + 1] * frac
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    source_y = np.clip(y + field[:, 0], 0, size - 1)
    source_x = np.clip(x + field[:, 1], 0, size - 1)
    y0 = np.minimum(np.floor(source_y).astype(int), size - 2)
    x0 = np.minimum(np.floor(source_x).astype(int), size - 2)
    wy = (source_y - y0)[..., None]
    wx = (source_x - x0)[..., None]
    batch = np.arange(count)[:, None, None]
    return (images[batch, y0, x0] * (1 - wy) * (1 - wx) + images[batch, y0, x0 + 1] * (1 - wy) * wx
            + images[batch, y0 + 1, x0] * wy * (1 - wx)
            + images[batch, y0 + 1, x0 + 1] * wy * wx).astype(np.float32)


def train_shapes_classifier(steps, batch_size=64, seed=0, pool_size=12000):
    """Trains a `ShapesClassifier` for `steps` from `seed`; returns it and its held-out accuracies.

    `studio train classifier` gives the shipped classifier's steps by default.
    """
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
