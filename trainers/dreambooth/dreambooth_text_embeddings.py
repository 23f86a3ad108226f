"""Text-encoder outputs computed once, for training with a frozen text encoder."""

import numpy as np

# Prompts encoded per text-encoder call while filling the table.
ENCODE_BATCH_SIZE = 8


def precompute_text_embeddings(text_encoder, token_ids, batch_size=ENCODE_BATCH_SIZE):
    """Encodes each distinct row of token ids once.

    A DreamBooth run has a handful of prompts ("a photo of sks dog", "a
    photo of a dog", caption lines); with the text encoder frozen their
    encodings never change, so computing them once saves the text encoder's
    forward pass, and its activations, in every step.

    Args:
        text_encoder: a callable from int token ids `(batch, length)` to
            the frozen encoder's `(batch, length, width)` context, such as
            `lambda ids: backbone.encode_text(ids)["context"]`, or to a dict
            of such outputs by name (SDXL: `{"context", "text_embeds"}`).
        token_ids: int array `(rows, length)`, e.g. the concatenated
            `token_ids` tables of the instance and class datasets.
        batch_size: rows per encoder call.

    Returns:
        `(table, contexts)`: the distinct rows, int32 `(distinct, length)`,
        and their encodings, float32 `(distinct, length, width)` (a dict of
        float32 arrays `(distinct, ...)` when `text_encoder` returns dicts).
    """
    from keras import ops

    table = np.unique(np.asarray(token_ids, dtype=np.int32), axis=0)
    outputs = [text_encoder(table[start : start + batch_size])
               for start in range(0, len(table), batch_size)]  # fmt: skip

    def joined(parts):
        return np.concatenate(
            [ops.convert_to_numpy(part).astype("float32") for part in parts], axis=0
        )

    if isinstance(outputs[0], dict):
        return table, {key: joined([output[key] for output in outputs]) for key in outputs[0]}
    return table, joined(outputs)


def attach_text_embeddings(dataset, table, contexts):
    """Replaces each batch's `token_ids` by its precomputed `context` (a `tf.data` map).

    Args:
        dataset: a `tf.data.Dataset` of dicts with `"token_ids"` `(batch,
            length)`.
        table: int32 `(distinct, length)`, from `precompute_text_embeddings`.
        contexts: float32 `(distinct, length, width)`, their encodings; or
            a dict of such arrays by conditioning name (SD3's `"context"`
            and `"pooled_projection"`), each attached under its name.

    Returns:
        The dataset with `"context"` float32 `(batch, length, width)` (or
        each name of `contexts`) in place of `"token_ids"`.

    Raises:
        tf.errors.InvalidArgumentError (when iterated): a batch holds a row
            that is not in `table`.
    """
    import tensorflow as tf

    table = tf.constant(table, tf.int32)
    if not isinstance(contexts, dict):
        contexts = {"context": contexts}
    contexts = {name: tf.constant(value, tf.float32) for name, value in contexts.items()}

    def lookup(batch):
        batch = dict(batch)
        token_ids = tf.cast(batch.pop("token_ids"), tf.int32)
        # (batch, distinct): which table row each example's prompt is.
        matches = tf.reduce_all(tf.equal(token_ids[:, None, :], table[None, :, :]), axis=-1)
        found = tf.debugging.assert_equal(
            tf.reduce_any(matches, axis=-1),
            True,
            message="A batch holds a prompt whose text embedding was not precomputed.",
        )
        with tf.control_dependencies([found]):
            index = tf.argmax(tf.cast(matches, tf.int32), axis=-1)
        for name, value in contexts.items():
            batch[name] = tf.gather(value, index)
        return batch

    return dataset.map(lookup, num_parallel_calls=tf.data.AUTOTUNE)
