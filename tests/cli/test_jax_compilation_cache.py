"""The studio's processes keep JAX's compiled programs in $KERAS_HOME unless the user chose a cache."""

import json
import os
import subprocess
import sys

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python(code, tmp_path, **env):
    """Runs `code` in a fresh interpreter with KERAS_HOME in tmp_path; returns its last line as JSON."""
    environment = {key: value for key, value in os.environ.items()
                   if key != "JAX_COMPILATION_CACHE_DIR"}
    environment.update(KERAS_HOME=str(tmp_path / "keras-home"), **env)
    completed = subprocess.run([sys.executable, "-c", code], env=environment, cwd=REPOSITORY,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_compiled_programs_land_in_keras_home_and_a_tensorflow_process_imports_no_jax(tmp_path):
    code = """
import json, sys
from studio.files.jax_compilation_cache import use_jax_compilation_cache
folder = use_jax_compilation_cache()
imported = "jax" in sys.modules
import jax, jax.numpy as jnp
jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()
print(json.dumps({"folder": folder, "jax_before": imported,
                  "config": jax.config.jax_compilation_cache_dir}))
"""
    found = _python(code, tmp_path, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    KERAS_BACKEND="tensorflow")
    expected = str(tmp_path / "keras-home" / "studio" / "jax-compilation-cache")
    assert found["folder"] == found["config"] == expected
    assert found["jax_before"] is False
    assert os.listdir(expected), "JAX wrote no compiled program to the cache"


def test_a_cache_the_user_chose_is_kept(tmp_path):
    own = str(tmp_path / "own-cache")
    code = """
import json
from studio.files.jax_compilation_cache import use_jax_compilation_cache
import jax
print(json.dumps([use_jax_compilation_cache(), jax.config.jax_compilation_cache_dir]))
"""
    assert _python(code, tmp_path, JAX_COMPILATION_CACHE_DIR=own) == [own, own]
    # Set in JAX's config after JAX was imported, with no variable.
    code = f"""
import json, jax
jax.config.update("jax_compilation_cache_dir", {own!r})
from studio.files.jax_compilation_cache import use_jax_compilation_cache
print(json.dumps([use_jax_compilation_cache(), jax.config.jax_compilation_cache_dir]))
"""
    assert _python(code, tmp_path) == [own, own]


def test_jax_imported_first_still_gets_the_studio_cache(tmp_path):
    code = """
import json, jax
from studio.files.jax_compilation_cache import use_jax_compilation_cache
print(json.dumps([use_jax_compilation_cache(), jax.config.jax_compilation_cache_dir]))
"""
    expected = str(tmp_path / "keras-home" / "studio" / "jax-compilation-cache")
    assert _python(code, tmp_path) == [expected, expected]


def test_the_cli_turns_the_cache_on_before_its_command_runs(tmp_path):
    # A command that fails on its input after parsing: the cache is set by then.
    code = """
import json, os
from studio.cli.main import main
code = main(["models", "import", "/no/such/model", "--out", "/no/such/out"])
print(json.dumps([code, os.environ.get("JAX_COMPILATION_CACHE_DIR")]))
"""
    expected = str(tmp_path / "keras-home" / "studio" / "jax-compilation-cache")
    assert _python(code, tmp_path) == [2, expected]
