"""Reading and writing the studio's JSON files (configs, summaries, records)."""

import json
import math
import numbers

from studio.files.atomic_write import write_file_atomically


def write_json(path, value, sort_keys=False, ensure_ascii=True, indent=2):
    """Writes `value` as JSON to `path`, atomically, ending in a newline.

    Floats that are not finite (NaN, infinities: the final loss of a run
    that stopped on a non-finite loss) are written as `null`: `NaN` and
    `Infinity` are not JSON, and other readers (a browser's `JSON.parse`)
    reject the whole file.

    Args:
        path: the file.
        value: a JSON-serialisable value.
        sort_keys: whether object keys are sorted.
        ensure_ascii: False keeps non-ASCII text as it is (UTF-8).
        indent: spaces per level, or None for one line.

    Returns:
        `path`.
    """
    text = json.dumps(
        finite_or_null(value),
        indent=indent,
        sort_keys=sort_keys,
        ensure_ascii=ensure_ascii,
        allow_nan=False,
    )
    return write_file_atomically(path, (text + "\n").encode("utf-8"))


def finite_or_null(value):
    """`value` with every non-finite float in it (at any depth) replaced by None.

    Real numbers that are not integers (NumPy's too) become Python floats
    (`np.float32(nan)` becomes None, `np.float32(1.5)` 1.5); other values
    are returned as they are.
    """
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def read_json(path):
    """The value of the JSON file `path`.

    Raises:
        OSError: the file cannot be read (FileNotFoundError when missing).
        ValueError: it is not valid JSON (`json.JSONDecodeError`) or not UTF-8.
    """
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def read_json_or_none(path):
    """The value of the JSON file `path`, or None when it is missing, unreadable
    or not (yet) valid JSON: for files another process may be writing."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def read_json_object(path, error=ValueError):
    """The JSON object (dict) in the file `path`, for files other tools wrote.

    Args:
        path: the file.
        error: the exception class raised, with one line naming the file,
            when it cannot be read, is not JSON or holds no object.

    Raises:
        `error`: see above.
    """
    try:
        value = read_json(path)
    except (OSError, ValueError) as cause:
        raise error(f"{path} is not valid JSON: {cause}") from None
    if not isinstance(value, dict):
        raise error(f"{path} must hold a JSON object. Received: {type(value).__name__}")
    return value
