"""The rule every count of a training run follows: a whole number, at least 1."""


def check_positive_integer(name, value):
    """Raises unless `value` is an int >= 1 (a bool is not a count).

    Args:
        name: the argument's name, for the message.
        value: the value to check.

    Returns:
        `value`.

    Raises:
        ValueError: "`name` must be an integer >= 1. Received: name=value".
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
    return value
