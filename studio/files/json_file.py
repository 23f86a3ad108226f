"""Reading and writing the studio's JSON files (configs, summaries, records)."""

import json

from studio.files.atomic_write import write_file_atomically


def write_json(path, value, sort_keys=False, ensure_ascii=True, indent=2):
    """Writes `value` as JSON to `path`, atomically, ending in a newline.

    Floats that are not finite are written as `NaN` / `Infinity`, as
    Python's `json` reads them back (a run that stopped on a non-finite
    loss records it so).

    Args:
        path: the file.
        value: a JSON-serialisable value.
        sort_keys: whether object keys are sorted.
        ensure_ascii: False keeps non-ASCII text as it is (UTF-8).
        indent: spaces per level, or None for one line.

    Returns:
        `path`.
    """
    text = json.dumps(value, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii)
    return write_file_atomically(path, (text + "\n").encode("utf-8"))


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
