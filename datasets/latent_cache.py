"""VAE moments of augmented image variants, encoded once and kept on disk.

Encoding a 512 px image with the VAE costs about as much as a UNet step, and
a concept folder is tiny, so the studio encodes a fixed number of augmented
variants of each image once and trains on those. The cache stores the
moments (mean and log-variance) rather than one sampled latent, so that
sampling stays stochastic in the training step:
`latent = (mean + exp(0.5 * logvar) * noise) * latent_scale`.
"""

import hashlib
import json
import logging
import os

import numpy as np

from studio.datasets.image_augmenter import NO_CROP, ImageAugmenter, check_crop_area_range
from studio.errors import InvalidInputError
from studio.files.atomic_write import atomic_file
from studio.files.keras_home import keras_home
from studio.models.image_preprocessor import ImagePreprocessor

logger = logging.getLogger(__name__)

# Bump when what is stored, or how variants are made, changes: old entries
# then no longer match any key.
CACHE_FORMAT_VERSION = 1
CACHE_FOLDER_NAME = "studio-latents"
CACHE_FILE_EXTENSION = ".npy"
# Images and moments are both NHWC; SD's VAE shrinks each side by this. A
# `downsampling` given to the cache (a backbone's `latent_downsampling`), or
# else an encoder's `downsampling_factor` (the studio's VAEEncoder), is taken
# at its word: the embedded shapes models' VAEs shrink by 4.
DEFAULT_VAE_DOWNSAMPLING = 8
SEED_MODULUS = 2**31 - 1


def default_cache_dir():
    """`$KERAS_HOME/studio-latents` (`~/.keras/studio-latents` by default)."""
    return keras_home(CACHE_FOLDER_NAME)


class LatentCache:
    """Encodes `num_variants` augmented variants of each image once, on disk.

    An entry is keyed by the image file's content hash, the resolution, the
    background of transparent areas, the augmentation settings, the number
    of variants and `model_id`: a changed image, resolution or model gets a
    new key, so stale moments are never used. With augmentation off every
    variant would be the same image, so one is stored.

    Args:
        encoder: the VAE encoder, or any callable mapping float32 images
            `(batch, H, W, 3)` in `[-1, 1]` to moments `(batch, H/d, W/d,
            2 * latent_channels)`: the mean, then the log-variance, unscaled.
        model_id: str naming the encoder's weights (a preset name and
            version, or a weights file hash): part of every key.
        cache_dir: str or None, the cache folder; None means
            `default_cache_dir()`. Must not be inside an image folder.
        num_variants: int, augmented variants stored per image.
        batch_size: int, images per encoder call.
        on_progress: None, or a callable `(done, total)` called as images
            are encoded (for a progress display).
        downsampling: int or None, `d` above: how many pixels a latent
            pixel spans (a backbone's `latent_downsampling`); None takes
            the encoder's `downsampling_factor`, else 8.

    Attributes:
        encoded_images: images encoded (cache misses) so far.

    Example:

    >>> cache = LatentCache(backbone.vae_encoder, model_id="sd-v1.5")
    >>> dataset = ConceptDataset(folder, tokenizer, "<cat-toy>", latent_cache=cache)
    """

    def __init__(self, encoder, model_id, cache_dir=None, num_variants=8, batch_size=4,
                 on_progress=None, downsampling=None):
        if not isinstance(model_id, str) or not model_id:
            raise ValueError(
                "`model_id` must be a non-empty string naming the encoder's weights. "
                f"Received: model_id={model_id!r}"
            )
        for name, value in (("num_variants", num_variants), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        self.encoder = encoder
        self.model_id = model_id
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
        self.num_variants = num_variants
        self.batch_size = batch_size
        self.encoded_images = 0
        self.on_progress = on_progress
        self.downsampling = int(
            downsampling or getattr(encoder, "downsampling_factor", DEFAULT_VAE_DOWNSAMPLING)
        )

    def moments(self, image_folder, crop_area_range=(0.8, 1.0), flip=True):
        """The moments of every image's variants, from the cache or encoded now.

        Args:
            image_folder: an `ImageFolder`.
            crop_area_range: pair of floats, as in `ImageAugmenter`.
            flip: bool, as in `ImageAugmenter`.

        Returns:
            float32 array `(images, variants, H/8, W/8, 2 * latent_channels)`.

        Raises:
            ValueError: if `cache_dir` is inside the image folder, or the
                encoder's output does not have the shape of moments.
        """
        self._check_outside(image_folder.folder)
        crop_area_range = check_crop_area_range(crop_area_range)
        variants = 1 if crop_area_range == NO_CROP and not flip else self.num_variants
        settings = {
            "format": CACHE_FORMAT_VERSION,
            "model": self.model_id,
            "resolution": image_folder.resolution,
            "background": list(image_folder.background_rgb),
            "crop_area_range": list(crop_area_range),
            "flip": bool(flip),
            "variants": variants,
        }
        paths = [
            self.entry_path(content_hash, settings) for content_hash in image_folder.content_hashes
        ]
        moments = [self._read(path, variants) for path in paths]
        # Images with equal contents share an entry: each is encoded once.
        missing = list({paths[i]: i for i, entry in enumerate(moments) if entry is None}.values())
        if missing:
            encoded = self._encode(image_folder, missing, variants, crop_area_range, flip)
            os.makedirs(self.cache_dir, exist_ok=True)
            entries = {}
            for index, entry in zip(missing, encoded):
                _save_atomically(paths[index], entry)
                entries[paths[index]] = entry
            moments = [entries.get(path) if entry is None else entry
                       for path, entry in zip(paths, moments)]
        shapes = {entry.shape for entry in moments}
        if len(shapes) != 1:
            raise InvalidInputError(
                "Cached moments of one folder must all have one shape. Received: "
                f"{sorted(shapes)}; clear {self.cache_dir} and run again"
            )
        return np.stack(moments)

    def entry_path(self, content_hash, settings):
        """The file of one image's moments under `settings`."""
        text = json.dumps({"content": content_hash, **settings}, sort_keys=True)
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return os.path.join(self.cache_dir, key + CACHE_FILE_EXTENSION)

    def _check_outside(self, folder):
        cache = os.path.realpath(self.cache_dir)
        folder = os.path.realpath(folder)
        if os.path.commonpath([cache, folder]) == folder:
            raise InvalidInputError(
                "`cache_dir` must be outside the image folder, which is never written "
                f"to. Received: cache_dir={self.cache_dir!r} inside {folder!r}"
            )

    def _read(self, path, variants):
        if not os.path.exists(path):
            return None
        try:
            entry = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            logger.warning("Re-encoding an unreadable cache entry %s (%s).", path, error)
            return None
        if entry.ndim != 4 or entry.shape[0] != variants or entry.dtype != np.float32:
            logger.warning("Re-encoding a cache entry of the wrong shape: %s.", path)
            return None
        return entry

    def _encode(self, image_folder, indices, variants, crop_area_range, flip):
        """Makes `variants` augmented copies of each image and encodes them."""
        import tensorflow as tf
        from tqdm.auto import tqdm

        resolution = image_folder.resolution
        encoded = []
        if self.on_progress is not None:
            self.on_progress(0, len(indices))
        for index in tqdm(indices, desc="Encoding latents", unit="image", disable=None):
            # Seeded by the image's own contents: its variants are the same
            # whichever other images are encoded with it (a cleared cache, a
            # grown folder, a duplicate), so every run of a folder trains on
            # the same variants.
            seed = int(image_folder.content_hashes[index], 16) % SEED_MODULUS
            augmenter = ImageAugmenter(resolution, crop_area_range, flip, seed=seed)
            copies = tf.data.Dataset.from_tensors(image_folder.images[index]).map(
                ImagePreprocessor.to_model_range).repeat(variants)
            if not augmenter.is_identity:
                # One copy at a time, in order (no parallel map): the
                # augmenter's random state must advance in order.
                copies = copies.map(lambda image: tf.clip_by_value(augmenter(image), -1.0, 1.0))
            copies = next(copies.batch(variants).as_numpy_iterator())
            chunks = [
                self._call_encoder(copies[start : start + self.batch_size], resolution)
                for start in range(0, variants, self.batch_size)
            ]
            encoded.append(np.concatenate(chunks))
            self.encoded_images += 1
            if self.on_progress is not None:
                self.on_progress(len(encoded), len(indices))
        return encoded

    def _call_encoder(self, images, resolution):
        import keras

        moments = np.asarray(keras.ops.convert_to_numpy(self.encoder(images)), dtype=np.float32)
        factor = self.downsampling
        size = resolution // factor
        if (
            moments.ndim != 4
            or moments.shape[:3] != (len(images), size, size)
            or moments.shape[3] % 2
        ):
            raise ValueError(
                f"The encoder must map images (batch, H, W, 3) to moments (batch, H/{factor}, "
                f"W/{factor}, 2 * latent_channels). Received: images {images.shape} -> "
                f"{moments.shape}"
            )
        return moments

    def get_config(self):
        return {
            "model_id": self.model_id,
            "cache_dir": self.cache_dir,
            "num_variants": self.num_variants,
            "batch_size": self.batch_size,
            "downsampling": self.downsampling,
        }


def _save_atomically(path, array):
    """Writes an entry whole or not at all, so a crash leaves no half entry."""
    with atomic_file(path) as file:
        np.save(file, array, allow_pickle=False)
