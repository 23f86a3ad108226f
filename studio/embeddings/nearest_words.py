"""Which vocabulary tokens a learned vector is closest to: a glimpse of its meaning."""

import numpy as np

from studio.errors import InvalidInputError

DEFAULT_TOP_K = 5
# Guards the division for all-zero vectors (their similarity is then 0).
NORM_EPSILON = 1e-12


def nearest_words(vectors, table, tokenizer, k=DEFAULT_TOP_K):
    """Finds the vocabulary tokens whose embeddings are nearest each vector.

    Nearness is cosine similarity with the rows of the text encoder's
    token-embedding table. Rows past the tokenizer's vocabulary (tables
    padded beyond it) are skipped.

    Args:
        vectors: float array `(num_vectors, width)`, or `(width,)`.
        table: float array `(vocabulary_size, width)`, e.g.
            `backbone.text_encoder.token_embedding.embeddings`.
        tokenizer: has `vocabulary_size` and `id_to_token(i)`
            (`studio.tokenizers.CLIPTokenizer`).
        k: how many tokens per vector.

    Returns:
        One list per vector of `k` `(token, similarity)` pairs, most similar
        first (fewer when the vocabulary is smaller than `k`).

    Raises:
        ValueError: shapes that do not fit, or `k` < 1.
    """
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    table = np.asarray(table, np.float32)
    if vectors.ndim != 2 or table.ndim != 2 or vectors.shape[1] != table.shape[1]:
        raise InvalidInputError(
            "`vectors` (num_vectors, width) and `table` (vocabulary_size, width) "
            "must have the same width. "
            f"Received: vectors.shape={vectors.shape}, table.shape={table.shape}"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"`k` must be a positive int. Received: k={k!r}")
    rows = min(table.shape[0], tokenizer.vocabulary_size)
    table = table[:rows]
    similarities = (vectors @ table.T) / np.maximum(
        np.linalg.norm(vectors, axis=1, keepdims=True) * np.linalg.norm(table, axis=1),
        NORM_EPSILON,
    )
    k = min(int(k), rows)
    results = []
    for row in similarities:
        best = np.argpartition(-row, k - 1)[:k]
        best = best[np.argsort(-row[best], kind="stable")]
        results.append([(tokenizer.id_to_token(int(i)), float(row[i])) for i in best])
    return results
