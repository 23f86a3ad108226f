"""A persistent cache of JAX's compiled programs under `$KERAS_HOME`, for the studio's processes."""

import os
import sys

from studio.files.keras_home import keras_home

CACHE_SUBDIR = os.path.join("studio", "jax-compilation-cache")
# JAX reads its options' defaults from variables of their names in capitals.
CACHE_VARIABLE = "JAX_COMPILATION_CACHE_DIR"


def use_jax_compilation_cache():
    """Keeps what XLA compiles under JAX for the next process, unless the user chose a cache.

    Under JAX every `studio generate` or `studio train` is a new process that
    compiles its networks again: on an H200 the first 512 px generation of
    SD 1.x took 63.6 s against 0.8 s for each one after it. JAX can keep
    compiled programs on disk (programs that took at least
    `jax_persistent_cache_min_compile_time_secs`, 1 s by default, to
    compile); this points it at `$KERAS_HOME/studio/jax-compilation-cache`
    through `JAX_COMPILATION_CACHE_DIR`, which the processes this one
    starts (the app's training runs) inherit. A cache the user chose (that
    variable, or JAX's config where JAX is already imported) is left as it
    is. Neither Keras nor JAX is imported here, so a TensorFlow process
    pays nothing.

    Returns:
        The cache folder JAX will use.
    """
    jax = sys.modules.get("jax")
    if jax is not None and jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    folder = os.environ.setdefault(CACHE_VARIABLE, keras_home(CACHE_SUBDIR))
    if jax is not None:
        # Imported before the variable was set: JAX read its default then.
        jax.config.update("jax_compilation_cache_dir", folder)
    return folder
