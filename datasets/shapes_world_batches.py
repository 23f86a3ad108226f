"""Endless training batches from the shapes world, drawn from a pre-rendered pool."""

import numpy as np

from studio.models.image_preprocessor import ImagePreprocessor

# Share of captions replaced by the empty prompt, so the model also learns
# the unconditional prediction that classifier-free guidance needs.
CAPTION_DROPOUT_RATE = 0.1


class ShapesWorldBatches:
    """Iterates over batches of shapes-world examples, deterministically from a seed.

    The pool of scenes is rendered once (`ShapesWorld.sample`); batch `i`
    draws its examples and captions from `seed` and `i` alone, so a resumed
    run that skips `n` batches sees the same batches as an uninterrupted
    one, and skipping is cheap.

    Args:
        images: uint8 `(count, size, size, 3)`, the pool.
        scenes: the pool's `ShapesScene`s (captions are drawn per batch).
        world: the `ShapesWorld` that captions them.
        batch_size: examples per batch.
        seed: int.
        tokenizer: None for image batches (`{"images"}` in `[-1, 1]`), or a
            tokenizer for caption batches (`{"token_ids", ...}`).
        moments: None, or float32 `(count, h, w, 2 * channels)` VAE moments
            of the pool: caption batches then carry `"moments"` instead of
            `"images"`.
        caption_dropout: share of empty captions.
    """

    def __init__(self, images, scenes, world, batch_size, seed, tokenizer=None,
                 moments=None, caption_dropout=CAPTION_DROPOUT_RATE):
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={batch_size}")
        self.images = images
        self.scenes = scenes
        self.world = world
        self.batch_size = batch_size
        self.seed = seed
        self.tokenizer = tokenizer
        self.moments = moments
        self.caption_dropout = caption_dropout

    def batch(self, index):
        """Batch number `index` (a dict of numpy arrays)."""
        rng = np.random.default_rng([self.seed, index])
        picks = rng.integers(len(self.images), size=self.batch_size)
        if self.tokenizer is None:
            return {"images": ImagePreprocessor.to_model_range(self.images[picks])}
        captions = [
            "" if rng.random() < self.caption_dropout else self.world.caption(self.scenes[i], rng)
            for i in picks
        ]
        batch = {"token_ids": np.asarray(self.tokenizer(captions), "int32")}
        if self.moments is not None:
            batch["moments"] = self.moments[picks]
        else:
            batch["images"] = ImagePreprocessor.to_model_range(self.images[picks])
        return batch

    def __iter__(self):
        index = 0
        while True:
            yield self.batch(index)
            index += 1
