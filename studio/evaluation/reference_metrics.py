"""CLIP-I, CLIP-T and DINO scores through keras-hub, where its models can be had.

Real Stable Diffusion concepts are usually scored with CLIP image-image
similarity (CLIP-I), CLIP image-text similarity (CLIP-T) and DINO
image-image similarity. They need keras-hub and its downloaded presets;
offline, or without keras-hub, `reference_metrics_status` says so and
`ReferenceMetrics` raises, instead of silently scoring nothing.
"""

import numpy as np

CLIP_PRESET = "clip_vit_base_patch16"
DINO_PRESET = "dinov2_base"


class ReferenceMetricsUnavailableError(RuntimeError):
    """keras-hub or its CLIP / DINO presets cannot be loaded here."""


def reference_metrics_status():
    """Dict metric -> "available" or the reason it is not."""
    try:
        import keras_hub  # noqa: F401
    except ImportError:
        reason = "unavailable: keras-hub is not installed (pip install keras-hub)"
        return {"clip_i": reason, "clip_t": reason, "dino": reason}
    status = {}
    for metrics, preset in ((("clip_i", "clip_t"), CLIP_PRESET), (("dino",), DINO_PRESET)):
        try:
            _load_backbone(preset)
            message = "available"
        except Exception as error:  # keras-hub raises various errors offline.
            message = f"unavailable: keras-hub preset {preset!r} cannot be loaded ({error})"
        for name in metrics:
            status[name] = message
    return status


def _load_backbone(preset):
    import keras_hub

    return keras_hub.models.Backbone.from_preset(preset)


def cosine_similarity(a, b):
    """Mean pairwise cosine similarity between rows of `a` and rows of `b`."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return float(np.mean(a @ b.T))


class ReferenceMetrics:
    """CLIP-I / CLIP-T / DINO between generated images, reference images and prompts.

    Raises:
        ReferenceMetricsUnavailableError: at construction, when keras-hub or
            its presets cannot be loaded (offline).
    """

    def __init__(self, clip_preset=CLIP_PRESET, dino_preset=DINO_PRESET):
        try:
            import keras_hub

            self.clip = keras_hub.models.CLIPBackbone.from_preset(clip_preset)
            self.clip_preprocessor = keras_hub.models.CLIPPreprocessor.from_preset(clip_preset)
            self.clip_image_converter = keras_hub.layers.CLIPImageConverter.from_preset(
                clip_preset)
            self.dino = keras_hub.models.Backbone.from_preset(dino_preset)
            self.dino_image_converter = keras_hub.layers.ImageConverter.from_preset(dino_preset)
        except Exception as error:
            raise ReferenceMetricsUnavailableError(
                f"CLIP-I / CLIP-T / DINO need keras-hub and its presets {clip_preset!r} and "
                f"{dino_preset!r}, which cannot be loaded here: {error}"
            ) from error

    def clip_image_embeddings(self, images):
        pixels = self.clip_image_converter(np.asarray(images, "float32"))
        return np.asarray(self.clip.get_vision_embeddings(pixels))

    def clip_text_embeddings(self, prompts):
        tokens = self.clip_preprocessor({"prompts": list(prompts)})
        return np.asarray(self.clip.get_text_embeddings(tokens["token_ids"]))

    def dino_embeddings(self, images):
        features = self.dino(self.dino_image_converter(np.asarray(images, "float32")))
        return np.asarray(features)[:, 0]  # The class token.

    def scores(self, generated, references, prompt):
        """Dict with `clip_i`, `clip_t` and `dino` for uint8 images and a prompt."""
        generated_clip = self.clip_image_embeddings(generated)
        return {
            "clip_i": cosine_similarity(generated_clip, self.clip_image_embeddings(references)),
            "clip_t": cosine_similarity(generated_clip, self.clip_text_embeddings([prompt])),
            "dino": cosine_similarity(
                self.dino_embeddings(generated), self.dino_embeddings(references)),
        }
