"""A `GenerationRunner` whose pipelines come from the app's process-wide cache."""

from studio.app.cached_models import file_key, load_pipeline
from studio.pipelines import GenerationRunner


class CachedGenerationRunner(GenerationRunner):
    """Runs settings on `load_pipeline`'s shared pipelines, so pages hold no model copies.

    LoRA modules without a layer are skipped with a warning there (files of
    other tools), as everywhere in the app.
    """

    def pipeline(self, settings):
        return load_pipeline(
            settings.model,
            loras=tuple((file_key(path), strength) for path, strength in settings.loras),
            embeddings=tuple(file_key(path) for path in settings.embeddings),
        )
