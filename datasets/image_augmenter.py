"""Random crop-and-resize and horizontal flip of training images, with keras_cv layers."""

# A flip is off for text, logos and asymmetric subjects, where the mirrored
# image is a different concept; a crop-area range of (1, 1) turns cropping off.
NO_CROP = (1.0, 1.0)
# Crops keep the square shape: squeezing the subject would teach a distortion.
KEEP_ASPECT_RATIO = (1.0, 1.0)


def check_crop_area_range(crop_area_range):
    """Returns `crop_area_range` as a pair of floats with 0 < low <= high <= 1."""
    try:
        low, high = (float(value) for value in crop_area_range)
    except (TypeError, ValueError):
        low = high = None
    if low is None or not 0.0 < low <= high <= 1.0:
        raise ValueError(
            "`crop_area_range` must be a pair (low, high) with 0 < low <= high <= 1: "
            "the share of the image area a random crop keeps. "
            f"Received: crop_area_range={crop_area_range!r}"
        )
    return low, high


class ImageAugmenter:
    """Random crop-and-resize, then a random horizontal flip, of image batches.

    A thin wrapper around `keras_cv.layers.RandomCropAndResize` and
    `keras_cv.layers.RandomFlip`, for use inside `tf.data`. The layers' random
    state advances with every call, so a seeded augmenter repeats its
    sequence only when called in a fixed order: map it over single images
    without parallel calls (on a batch, keras_cv loops over the images in
    parallel and the draws land in any order).

    Args:
        resolution: int, side of the square images in and out.
        crop_area_range: pair of floats, the smallest and largest share of
            the image area a crop keeps; `(1.0, 1.0)` never crops.
        flip: bool, whether to flip half of the images left-right.
        seed: int or None. The same seed gives the same sequence of crops
            and flips.

    Call arguments:
        images: float32 tensor `(resolution, resolution, 3)`, or a batch of
            them, in any value range.

    Returns:
        The augmented float32 image(s), same shape.
    """

    def __init__(self, resolution, crop_area_range=(0.8, 1.0), flip=True, seed=None):
        # keras_cv pulls in TensorFlow: imported here so that importing the
        # module (for `check_crop_area_range`) stays cheap.
        import keras_cv

        self.resolution = resolution
        self.crop_area_range = check_crop_area_range(crop_area_range)
        self.flip = bool(flip)
        self.seed = seed
        self._layers = []
        if self.crop_area_range != NO_CROP:
            crop = keras_cv.layers.RandomCropAndResize(
                target_size=(resolution, resolution),
                crop_area_factor=self.crop_area_range,
                aspect_ratio_factor=KEEP_ASPECT_RATIO,
                seed=seed,
                # float32 under a mixed-precision policy too: these are inputs.
                dtype="float32",
            )
            self._layers.append(crop)
        if self.flip:
            # keras_cv treats seed 0 as "no seed" for this layer.
            flip_seed = None if seed is None else seed + 1
            self._layers.append(
                keras_cv.layers.RandomFlip("horizontal", seed=flip_seed, dtype="float32")
            )
        for layer in self._layers:
            # On a batch, tf.map_fn: tf.vectorized_map has no converter for the
            # crop ops, falls back to a loop anyway and logs warnings.
            layer.auto_vectorize = False

    @property
    def is_identity(self):
        """True when neither cropping nor flipping is on."""
        return not self._layers

    def __call__(self, images):
        for layer in self._layers:
            images = layer(images)
        return images

    def get_config(self):
        return {
            "resolution": self.resolution,
            "crop_area_range": list(self.crop_area_range),
            "flip": self.flip,
            "seed": self.seed,
        }
