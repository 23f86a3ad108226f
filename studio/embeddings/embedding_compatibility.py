"""Whether an embedding fits a text encoder, checked before loading it."""

from studio.embeddings.textual_inversion_embedding import ARCHITECTURE_SD
from studio.embeddings.textual_inversion_embedding import TextualInversionEmbedding
from studio.errors import InvalidInputError

# Text-encoder widths of the public model families, to name them in messages.
KNOWN_WIDTHS = {
    768: "SD 1.x, CLIP ViT-L/14",
    1024: "SD 2.x, OpenCLIP ViT-H/14",
}


def describe_width(width):
    """'768 (SD 1.x, CLIP ViT-L/14)', or just the number for other widths."""
    family = KNOWN_WIDTHS.get(width)
    return f"{width} ({family})" if family else str(width)


def check_compatible(embedding, text_encoder_width, base_model_hash=None, token_table_hash=None):
    """Checks that `embedding` can be loaded into a text encoder.

    Vectors of another width cannot be loaded at all (an SD 1.x embedding
    into SD 2.x, say); vectors trained on other weights of the same width
    load, but may not mean the same, so that is a warning.

    Args:
        embedding: a `TextualInversionEmbedding`.
        text_encoder_width: the width of the text encoder's token vectors.
        base_model_hash: the sha256 of the text encoder's weights, or None
            to skip that comparison.
        token_table_hash: the model's `token_table_hash` (any model: preset,
            saved, imported), or None to skip that comparison. Files
            without one (older, or other tools') skip it too.

    Returns:
        A list of warnings (str); empty when nothing is amiss.

    Raises:
        ValueError: an SD-XL embedding, or widths that differ (the message
            names both).
    """
    if not isinstance(embedding, TextualInversionEmbedding):
        raise ValueError(
            "`embedding` must be a TextualInversionEmbedding. "
            f"Received: {type(embedding).__name__}"
        )
    if embedding.architecture != ARCHITECTURE_SD:
        shapes = ", ".join(f"{key} {value.shape[1]}" for key, value in embedding.vectors.items())
        raise InvalidInputError(
            "This is an SD-XL embedding (vectors for two text encoders: "
            f"{shapes}); it cannot be loaded into an SD 1.x/2.x text encoder. "
            f"Received: text_encoder_width={text_encoder_width}"
        )
    width = embedding.text_encoder_width
    if width != text_encoder_width:
        raise InvalidInputError(
            f"The embedding's vectors are {describe_width(width)} wide but the text "
            f"encoder's are {describe_width(text_encoder_width)}: an embedding only "
            "loads into the model family it was trained for. "
            f"Received: embedding width {width}, text_encoder_width={text_encoder_width}"
        )
    warnings = []
    trained_table = embedding.token_table_hash
    if token_table_hash and trained_table and trained_table != token_table_hash:
        trained_on = f" ({embedding.base_model})" if embedding.base_model else ""
        warnings.append(
            f"The embedding was trained on another base model{trained_on}: its token "
            f"table hash is {trained_table[:12]}..., this model's {token_table_hash[:12]}.... "
            "It loads, but may not look as intended; use it with the model it was trained on."
        )
        return warnings
    trained_hash = embedding.base_model_hash
    if base_model_hash and trained_hash and trained_hash != base_model_hash:
        trained_on = f" ({embedding.base_model})" if embedding.base_model else ""
        warnings.append(
            f"The embedding was trained on other text-encoder weights{trained_on}, "
            f"sha256 {embedding.base_model_hash[:12]}..., than these "
            f"({base_model_hash[:12]}...); it loads, but may not look as intended."
        )
    return warnings
