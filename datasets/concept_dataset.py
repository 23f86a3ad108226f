"""A tf.data pipeline of a concept's images (or their VAE moments) with tokenized prompts."""

import random
import re

import numpy as np

from studio.datasets.image_augmenter import ImageAugmenter, check_crop_area_range
from studio.errors import InvalidInputError
from studio.models.image_preprocessor import ImagePreprocessor
from studio.prompts.prompt_templates import PLACEHOLDER_MARK, PromptTemplates, fill_template

# Seeds are drawn below this when none is given, and per-stream seeds are
# offsets from the user's seed.
SEED_MODULUS = 2**31 - 1
_CAPTION_STREAM, _VARIANT_STREAM, _AUGMENT_STREAM = 1, 2, 3
# Placeholders written like `<cat-toy>` are new tokens that must be registered.
_PLACEHOLDER_PATTERN = re.compile(r"<[^<>\s]+>")


class ConceptDataset:
    """Pairs a concept's images with tokenized prompts, as a `tf.data` pipeline.

    Each image is captioned by its caption file when it has one (one
    caption per line, `{}` or the placeholder marking the concept) or else
    by the templates, filled with `placeholder`. Every epoch visits each
    image once, in a new random order, with a caption drawn at random from
    its own; a seed makes the whole sequence repeat.

    Without a latent cache the images are augmented on the fly (random
    crop-and-resize, horizontal flip, keras_cv layers) and yielded in
    `[-1, 1]`. With one, each image's variants are encoded once and a random
    variant's VAE moments are yielded instead.

    Args:
        image_folder: an `ImageFolder`, the decoded images.
        tokenizer: callable mapping a list of texts to an int array
            `(batch, sequence_length)`, e.g. `studio.tokenizers.CLIPTokenizer`
            with the placeholder already added.
        placeholder: str, the text standing for the concept: a placeholder
            token (`"<cat-toy>"`) or, for DreamBooth, `"sks dog"`.
        templates: what `PromptTemplates.get` accepts: `"object"`,
            `"style"`, a template file path, or a list of templates.
        flip: bool. Random horizontal flips; turn off for text, logos and
            asymmetric subjects.
        crop_area_range: pair of floats, the share of the image area a
            random crop keeps; `(1.0, 1.0)` turns cropping off.
        latent_cache: a `LatentCache` or None.

    Attributes:
        captions: for each image, the list of its prompts (filled).
        token_ids: int32 array `(prompts, sequence_length)` of all prompts.
        moments: with a latent cache, float32 array `(images, variants,
            H/8, W/8, 2 * latent_channels)`; else None.

    Raises:
        ValueError: if a caption file's line mentions neither `{}` nor the
            placeholder (every such line is listed), or the placeholder
            looks like `<token>` but the tokenizer has not registered it.
    """

    def __init__(
        self,
        image_folder,
        tokenizer,
        placeholder,
        templates="object",
        flip=True,
        crop_area_range=(0.8, 1.0),
        latent_cache=None,
    ):
        if not isinstance(placeholder, str) or not placeholder.strip():
            raise InvalidInputError(
                f"`placeholder` must be a non-empty string. Received: placeholder={placeholder!r}"
            )
        self.image_folder = image_folder
        self.tokenizer = tokenizer
        self.placeholder = placeholder
        self.templates = PromptTemplates.get(templates)
        self.flip = bool(flip)
        self.crop_area_range = check_crop_area_range(crop_area_range)
        self.latent_cache = latent_cache
        self._check_placeholder_is_registered()

        self.captions = self._fill_captions()
        table, offsets, counts = _caption_table(self.captions)
        self.token_ids = np.asarray(tokenizer(table), dtype=np.int32)
        self._caption_offsets = offsets
        self._caption_counts = counts
        self.moments = None
        if latent_cache is not None:
            self.moments = latent_cache.moments(image_folder, self.crop_area_range, self.flip)

    @property
    def sequence_length(self):
        """Length of each row of token ids."""
        return self.token_ids.shape[1]

    @property
    def yields_moments(self):
        """True when batches hold VAE moments (latent cache), False for images."""
        return self.moments is not None

    def __len__(self):
        """Images per epoch."""
        return len(self.image_folder)

    def build(self, batch_size=1, seed=None, epochs=None):
        """The `tf.data.Dataset` of training batches.

        Args:
            batch_size: int, examples per batch.
            seed: int >= 0 or None. The same seed yields the same batches
                (order, prompts, augmentations, variants); None draws one.
            epochs: int or None (repeat forever). Batches run across epoch
                boundaries; with a finite count the last batch may be short.

        Returns:
            A dataset of dicts: `"token_ids"` int32 `(batch,
            sequence_length)` and either `"images"` float32 `(batch,
            resolution, resolution, 3)` in `[-1, 1]` or, with a latent
            cache, `"moments"` float32 `(batch, resolution / 8,
            resolution / 8, 2 * latent_channels)`.
        """
        import tensorflow as tf

        _check_positive_int("batch_size", batch_size)
        if epochs is not None:
            _check_positive_int("epochs", epochs)
        if seed is None:
            seed = random.SystemRandom().randrange(SEED_MODULUS)
        elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_MODULUS:
            raise InvalidInputError(
                f"`seed` must be None or an integer in [0, {SEED_MODULUS}). Received: seed={seed!r}"
            )
        autotune = tf.data.AUTOTUNE
        count = len(self)
        offsets = tf.constant(self._caption_offsets, tf.int64)
        counts = tf.constant(self._caption_counts, tf.int64)
        token_ids = tf.constant(self.token_ids)
        variants = 1 if self.moments is None else self.moments.shape[1]

        order = tf.data.Dataset.range(count).shuffle(
            count, seed=seed, reshuffle_each_iteration=True
        )
        elements = tf.data.Dataset.zip(
            order.repeat(epochs),
            tf.data.Dataset.random(seed=seed + _CAPTION_STREAM),
            tf.data.Dataset.random(seed=seed + _VARIANT_STREAM),
        )

        def pick(index, caption_draw, variant_draw):
            caption = offsets[index] + tf.math.floormod(caption_draw, counts[index])
            return index, caption, tf.math.floormod(variant_draw, variants)

        elements = elements.map(pick, num_parallel_calls=autotune)
        drop_remainder = epochs is None

        if self.moments is not None:
            moments = tf.constant(self.moments)

            def load_moments(index, caption, variant):
                return {
                    "moments": tf.gather_nd(moments, tf.stack([index, variant], axis=-1)),
                    "token_ids": tf.gather(token_ids, caption),
                }

            batches = elements.batch(batch_size, drop_remainder=drop_remainder)
            return batches.map(load_moments, num_parallel_calls=autotune).prefetch(autotune)

        images = tf.constant(self.image_folder.images)
        augmenter = ImageAugmenter(
            self.image_folder.resolution,
            self.crop_area_range,
            self.flip,
            seed=(seed + _AUGMENT_STREAM) % SEED_MODULUS,
        )

        def load_image(index, caption, variant):
            return ImagePreprocessor.to_model_range(tf.gather(images, index)), tf.gather(token_ids, caption)

        def augment(image, tokens):
            # Bilinear resampling stays within the input range; the clip only
            # absorbs float rounding.
            return tf.clip_by_value(augmenter(image), -1.0, 1.0), tokens

        elements = elements.map(load_image, num_parallel_calls=autotune)
        if not augmenter.is_identity:
            # One image at a time, in order: the layers' random state advances
            # with each call, which is what makes a seeded run repeat.
            elements = elements.map(augment)
        batches = elements.batch(batch_size, drop_remainder=drop_remainder)
        batches = batches.map(
            lambda image, tokens: {"images": image, "token_ids": tokens},
            num_parallel_calls=autotune,
        )
        return batches.prefetch(autotune)

    def _check_placeholder_is_registered(self):
        registered = getattr(self.tokenizer, "placeholder_tokens", None)
        if registered is None:
            return
        unregistered = [
            token for token in _PLACEHOLDER_PATTERN.findall(self.placeholder)
            if token not in registered
        ]
        if unregistered:
            raise ValueError(
                "The placeholder must be added to the tokenizer before prompts are "
                "tokenized (`tokenizer.add_placeholder_tokens(...)`), or it would be "
                f"split into characters. Received: {unregistered} not in "
                f"tokenizer.placeholder_tokens ({sorted(registered)})"
            )

    def _fill_captions(self):
        template_prompts = self.templates.fill(self.placeholder)
        captions, unmarked = [], []
        for name, lines in zip(self.image_folder.names, self.image_folder.captions):
            if lines is None:
                captions.append(template_prompts)
                continue
            for line in lines:
                if PLACEHOLDER_MARK not in line and self.placeholder not in line:
                    unmarked.append(f"  caption of {name}: {line!r}")
            captions.append([fill_template(line, self.placeholder) for line in lines])
        if unmarked:
            raise InvalidInputError(
                f"Each caption must mention the concept, as `{PLACEHOLDER_MARK}` or as "
                f"{self.placeholder!r}, or training learns nothing from it. Received:\n"
                + "\n".join(unmarked)
            )
        return captions

    def get_config(self):
        return {
            "image_folder": self.image_folder.get_config(),
            "placeholder": self.placeholder,
            "templates": self.templates.get_config(),
            "flip": self.flip,
            "crop_area_range": list(self.crop_area_range),
            "latent_cache": None if self.latent_cache is None else self.latent_cache.get_config(),
        }


def _caption_table(captions):
    """All distinct prompts once, and each image's (offset, count) into them.

    Images captioned by the templates share one block of rows, so a folder
    of 30 images with 27 templates tokenizes 27 prompts, not 810.
    """
    table, offsets, counts, blocks = [], [], [], {}
    for prompts in captions:
        key = tuple(prompts)
        if key not in blocks:
            blocks[key] = len(table)
            table.extend(prompts)
        offsets.append(blocks[key])
        counts.append(len(prompts))
    return table, np.asarray(offsets, np.int64), np.asarray(counts, np.int64)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
