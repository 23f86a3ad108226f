"""A metric that reports the last value it was given."""

import keras
from keras import ops


class LastValue(keras.metrics.Metric):
    """Holds the last value it was given, such as the loss of the last step.

    Keras' `loss` is a running mean over the epoch, which a single
    non-finite step spoils for the rest of it; this metric shows each
    step's own value, so callbacks can tell one bad step from many.

    Args:
        name: the metric's name, the key of its value in `fit`'s logs.
        dtype: the dtype of the held value.
    """

    def __init__(self, name="last_value", dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        # "mean": under `tf.distribute` each replica holds its own copy; the
        # trainers give every replica the same (global) value, which reads
        # back as itself both inside a step and after it.
        self.value = self.add_variable(
            shape=(), initializer="zeros", aggregation="mean", name="value"
        )

    def update_state(self, value):
        self.value.assign(ops.cast(value, self.dtype))

    def result(self):
        return ops.convert_to_tensor(self.value)

    def reset_state(self):
        self.value.assign(0.0)
