"""A backbone view whose tokenizer and text encoding know loaded embeddings' tokens."""

import warnings

from studio.errors import InvalidInputError

# `studio.models.presets.SDXL` and `SD3`: families whose text is CLIP-L + CLIP-G,
# read from `{clip_l, clip_g}` embedding files.
SDXL_FAMILY = "sdxl"
SD3_FAMILY = "sd3"
TWO_ENCODER_FAMILIES = {SDXL_FAMILY: "SD-XL", SD3_FAMILY: "SD3"}
# Where the studio's embedding files record their token (`embedding_files.KEY_PLACEHOLDER`).
STUDIO_PLACEHOLDER_KEY = "studio.placeholder"


def published_text_encoder_hash(preset):
    """The published sha256 of a named preset's text-encoder weights, or "" for others."""
    from studio.models import BACKBONE_PRESETS

    weights = (BACKBONE_PRESETS.get(preset) or {}).get("weights") or {}
    return (weights.get("text_encoder") or {}).get("file_hash", "")


def backbone_with_embeddings(backbone, embeddings, names=None):
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
            `studio.embeddings.load_embedding`). An SD-XL or SD3 backbone
            takes `{"clip_l", "clip_g"}` embeddings (architecture "sd-xl"),
            one row of each per token, into its two CLIP encoders.
        names: SD-XL and SD3 only: each embedding's placeholder when its file does
            not name it (A1111's rule: the file's name), one per embedding;
            None uses the placeholder the studio records in its files.

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
    if getattr(backbone, "family", None) in TWO_ENCODER_FAMILIES:
        return _two_encoder_view(backbone, embeddings, names)
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


def _two_encoder_view(backbone, embeddings, names):
    """`backbone_with_embeddings` for SD-XL and SD3: one placeholder lookup per CLIP encoder."""
    import numpy as np

    from studio.embeddings.placeholder_embedding import PlaceholderEmbedding
    from studio.embeddings.textual_inversion_embedding import ARCHITECTURE_SDXL, SDXL_ENCODERS
    from studio.tokenizers import CLIPTokenizer

    if names is not None and len(names) != len(embeddings):
        raise InvalidInputError(
            f"Give one name per embedding. Received: {len(names)} names for "
            f"{len(embeddings)} embeddings"
        )
    tables = backbone.token_embeddings
    family = TWO_ENCODER_FAMILIES[backbone.family]
    encoders = _text_encoders(backbone)
    tokenizer = CLIPTokenizer.from_config(backbone.tokenizer.get_config())
    vectors = {key: [] for key in SDXL_ENCODERS}
    for index, embedding in enumerate(embeddings):
        if embedding.architecture != ARCHITECTURE_SDXL:
            raise InvalidInputError(
                "An SD 1.x/2.x embedding (vectors for one text encoder) cannot be loaded into "
                f"an {family} model, which needs {list(SDXL_ENCODERS)} vectors. Received: "
                f"placeholders {embedding.placeholders}"
            )
        placeholder = embedding.metadata.get(STUDIO_PLACEHOLDER_KEY) or (
            names[index] if names is not None else ""
        )
        if not placeholder:
            raise InvalidInputError(
                "This {clip_l, clip_g} embedding does not name its token; load it from its file "
                "(the file's name is the token) or give `names`. Received: no name"
            )
        counts = {key: values.shape[0] for key, values in embedding.vectors.items()}
        widths = {key: values.shape[1] for key, values in embedding.vectors.items()}
        expected = {key: tables[key].output_dim for key in SDXL_ENCODERS}
        if widths != expected or len(set(counts.values())) != 1:
            raise InvalidInputError(
                f"The embedding {placeholder!r} does not fit this {family} model's text "
                f"encoders: expected widths {expected} and as many vectors for each; load "
                f"embeddings trained on this model family. Received: widths {widths}, "
                f"vectors {counts}, trained on {embedding.base_model or 'an unnamed model'}"
            )
        if placeholder in tokenizer.placeholder_tokens:
            raise InvalidInputError(
                f"Two embeddings use the placeholder {placeholder!r}; load only one of them. "
                f"Received: {placeholder!r} twice"
            )
        tokenizer.add_placeholder_tokens(placeholder, counts[SDXL_ENCODERS[0]])
        for key in SDXL_ENCODERS:
            vectors[key].append(np.asarray(embedding.vectors[key], "float32"))
    first_new_id = backbone.tokenizer.vocabulary_size
    lookup = {
        key: PlaceholderEmbedding(
            tables[key],
            first_new_id,
            np.concatenate(vectors[key]),
            output_dtype=encoders[key].compute_dtype,
            name=f"loaded_embeddings_{key}",
        )
        for key in SDXL_ENCODERS
    }
    return backbone.with_token_lookup(tokenizer, lookup)


def _text_encoders(backbone):
    """The CLIP encoders by embedding-file key (SD-XL: `text_encoder`, `text_encoder_2`)."""
    from studio.embeddings.textual_inversion_embedding import SDXL_ENCODERS

    if backbone.family == SD3_FAMILY:
        return backbone.text_encoders
    return dict(zip(SDXL_ENCODERS, (backbone.text_encoder, backbone.text_encoder_2)))
