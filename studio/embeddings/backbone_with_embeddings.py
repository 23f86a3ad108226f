"""A backbone view whose tokenizer and text encoding know loaded embeddings' tokens."""

import warnings

from studio.errors import InvalidInputError

# `studio.models.presets.SDXL`.
SDXL_FAMILY = "sdxl"


def published_text_encoder_hash(preset):
    """The published sha256 of a named preset's text-encoder weights, or "" for others."""
    from studio.models import BACKBONE_PRESETS

    weights = (BACKBONE_PRESETS.get(preset) or {}).get("weights") or {}
    return (weights.get("text_encoder") or {}).get("file_hash", "")


def backbone_with_embeddings(backbone, embeddings):
    """A view of `backbone` that reads the placeholders of `embeddings`.

    The backbone itself is not changed (it may be shared by other views):
    the view (`backbone.with_token_lookup`, a `TokenLookupView`) has a copy
    of the tokenizer with every embedding's placeholders added and a token
    lookup that reads their ids from the embeddings' vectors, the other ids
    from the model's own table. Pipelines take the view as a backbone. An
    embedding trained on other text-encoder weights of the same width loads
    with a `UserWarning`.

    Args:
        backbone: a `StableDiffusionBackbone`.
        embeddings: `TextualInversionEmbedding`s (any format read by
            `studio.embeddings.load_embedding`).

    Returns:
        The view (the backbone itself when `embeddings` is empty).

    Raises:
        ValueError: an embedding does not fit the text encoder (its width,
            or SD-XL), two embeddings have the same placeholder, or a
            placeholder is a vocabulary word.

    Example:

    ```python
    view = backbone_with_embeddings(backbone, [load_embedding("cat-toy.pt")])
    TextToImagePipeline(view)("a photo of <cat-toy>", seed=1)
    ```
    """
    import numpy as np

    from studio.embeddings.embedding_compatibility import check_compatible
    from studio.tokenizers import CLIPTokenizer
    from studio.embeddings.placeholder_embedding import PlaceholderEmbedding

    embeddings = list(embeddings)
    if not embeddings:
        return backbone
    if getattr(backbone, "family", None) == SDXL_FAMILY:
        raise InvalidInputError(
            "Loading embeddings into an SD-XL model is not supported yet (its token lookup "
            "is one per text encoder, {'clip_l', 'clip_g'}); generate without --embedding. "
            f"Received: {len(embeddings)} embedding(s) for {backbone.name}"
        )
    token_embedding = backbone.token_embedding
    width = token_embedding.output_dim
    base_hash = published_text_encoder_hash(backbone.name)
    tokenizer = CLIPTokenizer.from_config(backbone.tokenizer.get_config())
    vectors = []
    for embedding in embeddings:
        for message in check_compatible(embedding, width, base_hash, backbone.token_table_hash):
            warnings.warn(message, UserWarning, stacklevel=2)
        for placeholder, values in embedding.vectors.items():
            if placeholder in tokenizer.placeholder_tokens:
                raise InvalidInputError(
                    f"Two embeddings use the placeholder {placeholder!r}; load only one "
                    "of them, or rename one (`TextualInversionEmbedding.renamed`). "
                    f"Received: {placeholder!r} twice"
                )
            tokenizer.add_placeholder_tokens(placeholder, int(values.shape[0]))
            vectors.append(np.asarray(values, "float32"))
    first_new_id = backbone.tokenizer.vocabulary_size
    lookup = PlaceholderEmbedding(
        token_embedding,
        first_new_id,
        np.concatenate(vectors),
        output_dtype=backbone.text_compute_dtype,
        name="loaded_embeddings",
    )
    return backbone.with_token_lookup(tokenizer, lookup)
