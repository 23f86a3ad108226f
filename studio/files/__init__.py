"""Files the studio writes and where: atomic writes, JSON files, `$KERAS_HOME`, JAX's compilation cache."""
