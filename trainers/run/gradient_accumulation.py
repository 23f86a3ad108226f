"""How many batches make one optimizer update, read from a trainer's optimizer."""


def gradient_accumulation_steps(optimizer):
    """Batches per optimizer update of `optimizer` (1 without accumulation).

    Mixed precision wraps the optimizer in a `LossScaleOptimizer`; the
    count is its inner optimizer's.
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return int(getattr(optimizer, "gradient_accumulation_steps", None) or 1)
