"""Where Keras keeps its downloads, and the studio its caches: `$KERAS_HOME`."""

import os

KERAS_HOME_VARIABLE = "KERAS_HOME"
# Keras' default when the variable is not set.
DEFAULT_KERAS_HOME = os.path.join("~", ".keras")


def keras_home(*parts):
    """`$KERAS_HOME` (`~/.keras` by default), joined with `parts`.

    `keras.utils.get_file(..., cache_subdir=name)` keeps its files in
    `keras_home(name)`.

    Args:
        *parts: path parts below the folder, e.g. `"models"`.

    Returns:
        A path (which may not exist yet).
    """
    home = os.environ.get(KERAS_HOME_VARIABLE, os.path.expanduser(DEFAULT_KERAS_HOME))
    return os.path.join(home, *parts)
