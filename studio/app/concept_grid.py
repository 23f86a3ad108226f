"""An X/Y plot whose prompt names each cell's concept: `{concept}` becomes its tokens."""

import dataclasses

from studio.app.file_library import embedding_tokens
from studio.grids import ParameterGrid

CONCEPT_FIELD = "{concept}"


@dataclasses.dataclass
class ConceptGrid(ParameterGrid):
    """A `ParameterGrid` whose prompt's `{concept}` becomes each cell's embedding tokens.

    An embedding axis (a run's checkpoints, or several embeddings) gives
    each cell other files, with other tokens; the prompt template names
    them all. A cell without an embedding (the base model, a LoRA) reads
    `plain_words` instead.

    Args:
        plain_words: the words for `{concept}` in cells without an embedding.
        (the rest as `ParameterGrid`)

    Example:

    ```python
    grid = ConceptGrid(GenerationSettings("a photo of {concept}", model="tiny-shapes"),
                       GridAxis("embedding", ["none", "cat.safetensors"]),
                       plain_words="a cat")
    ```
    """

    plain_words: str = "a toy"

    def cell_settings(self, x, y=0, z=0):
        settings = super().cell_settings(x, y, z)
        if CONCEPT_FIELD not in settings.prompt:
            return settings
        tokens = " ".join(token for path in settings.embeddings
                          for token in embedding_tokens(path))
        return dataclasses.replace(
            settings, prompt=settings.prompt.replace(CONCEPT_FIELD, tokens or self.plain_words))

