"""The `studio` command: `studio SUBCOMMAND ...`.

Each subcommand lives in its own module with `add_parser(subparsers)` and
`run(args) -> exit code`; heavy imports (Keras, TensorFlow) happen inside
`run`, so `studio --help` is instant.
"""

import argparse
import importlib
import os
import sys

from studio import __version__

# (module, attribute) of each subcommand group, in the order `--help` lists them.
SUBCOMMAND_MODULES = (
    "studio.cli.generate_command",
    "studio.cli.train_command",
    "studio.cli.data_check_command",
    "studio.cli.embeddings_command",
    "studio.cli.models_command",
    "studio.cli.demo_command",
    "studio.cli.evaluate_command",
)

from studio.errors import USER_ERRORS


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
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv=None):
    # TensorFlow's C++ start-up chatter is noise to a CLI user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("studio: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"studio {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
