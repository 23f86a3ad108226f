"""A base model's identity: the sha256 of its text encoder's token table."""

import hashlib

import numpy as np


def token_table_hash(table):
    """The sha256 (hex) of a token table's float32 values and shape.

    Embeddings and LoRAs are trained against a text encoder's token table;
    two models with the same table are the same base for them, whatever
    they are called or however they were loaded (preset, saved folder,
    diffusers import, single file), and any other table is another base.

    Args:
        table: array-like `(vocabulary_size, width)`.

    Returns:
        64 hex digits.
    """
    values = np.ascontiguousarray(np.asarray(table, dtype="<f4"))
    digest = hashlib.sha256(f"float32 {list(values.shape)}\n".encode("ascii"))
    digest.update(values.tobytes())
    return digest.hexdigest()
