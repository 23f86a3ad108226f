"""The `studio` command: `studio SUBCOMMAND ...`.

Each subcommand lives in its own module with `add_parser(subparsers)` and
`run(args) -> exit code`; heavy imports (Keras, TensorFlow) happen inside
`run`, so `studio --help` is instant.
"""

import argparse
import importlib
import os
import sys
import warnings

from studio import __version__

# The module of each subcommand, in the order `--help` lists them; TRAIN_GROUP
# is the `studio train METHOD` group, made here from TRAIN_METHOD_MODULES.
TRAIN_GROUP = "train"
SUBCOMMAND_MODULES = (
    "studio.cli.generate_command",
    "studio.cli.grid_command",
    TRAIN_GROUP,
    "studio.cli.data_check_command",
    "studio.cli.embeddings_command",
    "studio.cli.models_command",
    "studio.cli.demo_command",
    "studio.cli.evaluate_command",
)
# The modules of `studio train METHOD`, each with `add_method_parser(methods)`.
TRAIN_METHOD_MODULES = (
    "studio.cli.train_command",
    "studio.cli.dreambooth_command",
    "studio.cli.base_command",
)
# `studio train` without a method prints its help and exits with this code.
EXIT_USAGE = 2

from studio.errors import StudioWarning, is_user_error, user_error_message
from studio.files.jax_compilation_cache import use_jax_compilation_cache


def build_parser():
    parser = argparse.ArgumentParser(
        prog="studio",
        description="Teach Stable Diffusion new concepts with Keras 3.",
    )
    parser.add_argument("--version", action="version", version=f"studio {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show full tracebacks instead of one-line error messages",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        if module_name == TRAIN_GROUP:
            add_train_parser(subparsers)
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.add_parser(subparsers)
    return parser


def add_train_parser(subparsers):
    """Registers the `train` group and its methods; returns its parser."""
    train = subparsers.add_parser(
        "train",
        help="teach the model a new concept",
        description="Fine-tune Stable Diffusion on a folder of images.",
    )
    methods = train.add_subparsers(dest="train_method", metavar="METHOD")
    for module_name in TRAIN_METHOD_MODULES:
        importlib.import_module(module_name).add_method_parser(methods)

    def print_help(args):
        train.print_help()
        return EXIT_USAGE

    train.set_defaults(run=print_help)
    return train


def main(argv=None):
    # TensorFlow's C++ start-up chatter is noise to a CLI user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(command_name(args), warnings.showwarning)
            use_jax_compilation_cache()
            return args.run(args)
    except KeyboardInterrupt:
        print("studio: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # A user's error is one line; anything else is a bug and keeps its
        # traceback (as does everything under --debug).
        if args.debug or not is_user_error(error):
            raise
        print(f"{command_name(args)}: error: {user_error_message(error)}", file=sys.stderr)
        return EXIT_USAGE


def run_command(*argv):
    """Runs `studio ARGV...` in this process and returns its exit code; errors propagate.

    For notebooks and tests: unlike `main`, a user's error is raised (a
    `SettingsError`, ...), not printed as one line.

    Example:

    ```python
    run_command("train", "textual-inversion", "--model", "tiny-shapes", "--data", "shapes/",
                "--token", "<cross>", "--init-word", "square", "--out", "runs/cross")
    ```
    """
    args = build_parser().parse_args([str(arg) for arg in argv])
    return args.run(args)


def command_name(args):
    """"studio train textual-inversion", "studio embeddings convert", ...: what the user ran."""
    # The destinations of the subcommand levels, outermost first.
    levels = ("command", "train_method", "embeddings_command", "models_command", "data_command")
    return " ".join(["studio"] + [getattr(args, name) for name in levels
                                  if getattr(args, name, None)])


def _one_line_warnings(command, show):
    """A `warnings.showwarning` that prints the studio's warnings as one line each."""

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, StudioWarning):
            print(f"{command}: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


if __name__ == "__main__":
    sys.exit(main())
