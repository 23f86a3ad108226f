"""A backbone view whose tokenizer and text encoder know loaded embeddings' tokens."""

import copy


def backbone_with_embeddings(backbone, embeddings):
    """A view of `backbone` that reads the placeholders of `embeddings`.

    The backbone itself is not changed (it may be shared by other views):
    the view has a copy of the tokenizer with the placeholders added and a
    text encoder that looks their ids up in the embeddings' vectors, the
    other ids in the model's own table. Pipelines take the view as a
    backbone.

    Args:
        backbone: a `StableDiffusionBackbone`.
        embeddings: `TextualInversionEmbedding`s (any format read by
            `studio.embeddings.load_embedding`).

    Returns:
        The view (the backbone itself when `embeddings` is empty).

    Raises:
        ValueError: an embedding does not fit the text encoder (width,
            SD-XL), two embeddings have the same placeholder, or a
            placeholder is a vocabulary word.
    """
    import numpy as np

    from studio.embeddings import check_compatible
    from studio.tokenizers import CLIPTokenizer
    from studio.trainers.placeholder_embedding import PlaceholderEmbedding

    embeddings = list(embeddings)
    if not embeddings:
        return backbone
    encoder = backbone.text_encoder
    width = encoder.token_embedding.output_dim
    tokenizer = CLIPTokenizer.from_config(backbone.tokenizer.get_config())
    vectors = []
    for embedding in embeddings:
        check_compatible(embedding, width)
        for placeholder, values in embedding.vectors.items():
            if placeholder in tokenizer.placeholder_tokens:
                raise ValueError(
                    f"Two embeddings use the placeholder {placeholder!r}; load only one "
                    "of them, or rename one on the Embeddings page. "
                    f"Received: {placeholder!r} twice"
                )
            tokenizer.add_placeholder_tokens(placeholder, int(values.shape[0]))
            vectors.append(np.asarray(values, "float32"))
    first_new_id = backbone.tokenizer.vocabulary_size
    lookup = PlaceholderEmbedding(
        encoder.token_embedding,
        first_new_id,
        np.concatenate(vectors),
        output_dtype=encoder.compute_dtype,
        name="loaded_embeddings",
    )

    def text_encoder(token_ids):
        return encoder.encode_token_embeddings(lookup(token_ids))

    view = copy.copy(backbone)
    view.tokenizer = tokenizer
    view.text_encoder = text_encoder
    return view
