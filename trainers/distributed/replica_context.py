"""Where a train step stands in a data-parallel step: its replica and the whole batch.

Under TensorFlow's `tf.distribute.MirroredStrategy` each replica runs the
step on its own equal, contiguous part of the global batch (replica `i`
holds rows `i * b` to `(i + 1) * b - 1`), and the optimizer SUMS the
replicas' gradients. So that one data-parallel step equals one
single-device step on the global batch, a trainer's step uses these
helpers:

- `draw_replica_rows`: random draws are made for the whole global batch
  and each replica keeps its own rows, so example `k` gets the same noise
  and timestep whatever the number of replicas (and replicas never share
  draws).
- `sum_over_replicas`: counts over the global batch (e.g. class examples),
  so that each replica's loss is its share of the global-batch loss and
  the shares sum to it.

Under JAX (`keras.distribution.DataParallel`) and on a single device the
step sees the global batch itself: the position is `(0, 1)` and the
helpers do nothing. TensorFlow is imported only under its backend.
"""

import keras


def replica_position():
    """`(replica index, number of replicas)` of the step being traced.

    `(0, 1)` outside a multi-replica `tf.distribute` step, and always under
    backends other than TensorFlow.
    """
    if keras.config.backend() != "tensorflow":
        return 0, 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    # None in a cross-replica context (e.g. Keras' symbolic build in the
    # strategy's scope), which sees no replica's part.
    if context is None or context.num_replicas_in_sync == 1:
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def sum_over_replicas(value):
    """The sum of `value` over the replicas of a data-parallel step (`value` itself on one)."""
    _, count = replica_position()
    if count == 1:
        return value
    import tensorflow as tf

    return tf.distribute.get_replica_context().all_reduce("SUM", value)


def draw_replica_rows(draw, shape):
    """This replica's rows of a random draw for the whole global batch.

    Args:
        draw: callable taking a shape and returning a random tensor of it,
            such as `lambda s: keras.random.normal(s, seed=seed_generator)`.
        shape: the replica's shape, batch first.

    Returns:
        A tensor of `shape`: rows `i * b` to `(i + 1) * b - 1` of
        `draw((b * replicas, ...))` for replica `i` with `b` rows; on one
        device (or under JAX), `draw(shape)` itself.
    """
    index, count = replica_position()
    if count == 1:
        return draw(shape)
    rows = shape[0]
    whole = draw((rows * count, *shape[1:]))
    start = index * rows
    return whole[start : start + rows]


def replica_share(value):
    """This replica's share of a mean over the global batch: `value / replicas`.

    For a replica's mean over its own rows when every replica holds as many
    rows (as Keras' own losses scale under `tf.distribute`): the shares sum
    to the global-batch mean. `value` itself on one device.
    """
    _, count = replica_position()
    if count == 1:
        return value
    return value / count
