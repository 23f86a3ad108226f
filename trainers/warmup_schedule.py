"""Learning rate with a linear warm-up, then constant or cosine decay."""

import math

import keras
from keras import ops

from studio.errors import InvalidInputError

DECAYS = ("constant", "cosine")


@keras.saving.register_keras_serializable(package="studio")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Rises linearly from 0 to `learning_rate` over `warmup_steps`, then holds or decays.

    Keras optimizers call their schedule with the count of `apply` calls,
    which with gradient accumulation is the count of micro-batches; this
    schedule divides it by `gradient_accumulation_steps`, so that
    `warmup_steps` and `decay_steps` count optimizer updates.

    Args:
        learning_rate: float. The rate after warm-up.
        warmup_steps: int >= 0. Updates spent rising from 0 (0: none).
        decay: `"constant"` (hold `learning_rate`) or `"cosine"` (half a
            cosine from `learning_rate` down to 0 at `decay_steps`).
        decay_steps: int. The update count at which the cosine reaches 0
            (the run's length); only used by `"cosine"`.
        gradient_accumulation_steps: int >= 1. Micro-batches per update.

    Example:

    ```python
    schedule = WarmupSchedule(5e-3, warmup_steps=100, decay="cosine", decay_steps=2000)
    optimizer = keras.optimizers.Adam(schedule)
    ```
    """

    def __init__(
        self,
        learning_rate,
        warmup_steps=0,
        decay="constant",
        decay_steps=None,
        gradient_accumulation_steps=1,
    ):
        if not learning_rate > 0:
            raise InvalidInputError(
                f"`learning_rate` must be positive. Received: learning_rate={learning_rate!r}"
            )
        if decay not in DECAYS:
            raise InvalidInputError(f"`decay` must be one of {DECAYS}. Received: decay={decay!r}")
        if decay == "cosine" and not (decay_steps and decay_steps > warmup_steps):
            raise InvalidInputError(
                "A cosine decay needs `decay_steps` greater than `warmup_steps`. "
                f"Received: decay_steps={decay_steps!r}, warmup_steps={warmup_steps!r}"
            )
        for name, value, low in (
            ("warmup_steps", warmup_steps, 0),
            ("gradient_accumulation_steps", gradient_accumulation_steps, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(
                    f"`{name}` must be an integer >= {low}. Received: {name}={value!r}"
                )
        self.learning_rate = float(learning_rate)
        self.warmup_steps = warmup_steps
        self.decay = decay
        self.decay_steps = decay_steps
        self.gradient_accumulation_steps = gradient_accumulation_steps

    def __call__(self, step):
        # Updates done so far; the first update uses step 0 -> 1/warmup.
        update = ops.floor_divide(ops.cast(step, "int32"), self.gradient_accumulation_steps)
        update = ops.cast(update, "float32")
        rate = ops.convert_to_tensor(self.learning_rate, "float32")
        if self.decay == "cosine":
            span = float(self.decay_steps - self.warmup_steps)
            progress = ops.clip((update - self.warmup_steps) / span, 0.0, 1.0)
            rate = rate * 0.5 * (1.0 + ops.cos(math.pi * progress))
        if self.warmup_steps:
            rate = rate * ops.minimum((update + 1.0) / self.warmup_steps, 1.0)
        return rate

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "decay": self.decay,
            "decay_steps": self.decay_steps,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }
