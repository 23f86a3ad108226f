"""`studio train ...`: fine-tune Stable Diffusion from the command line.

`studio train textual-inversion` learns a placeholder token from a folder
of images (`studio.trainers.train_textual_inversion`); `studio train
dreambooth` (in `dreambooth_command`) fine-tunes the UNet on a subject.
The options are built from the settings dataclasses' fields.
"""

import os
import sys

from studio.cli.settings_options import add_settings_options, settings_from_options

# Exit codes: done, stopped by a non-finite loss, bad usage.
EXIT_OK = 0
EXIT_NON_FINITE = 1
EXIT_USAGE = 2
DEFAULT_RUNS_FOLDER = "runs"
COMMAND = "studio train textual-inversion"


def add_parser(subparsers):
    """Registers `train` and its `textual-inversion` subcommand."""
    train = subparsers.add_parser(
        "train",
        help="teach the model a new concept",
        description="Fine-tune Stable Diffusion on a folder of images.",
    )
    methods = train.add_subparsers(dest="train_method", metavar="METHOD")
    _add_textual_inversion(methods)
    # Imported here: the DreamBooth command module imports nothing heavy either.
    from studio.cli.dreambooth_command import add_dreambooth_parser

    add_dreambooth_parser(methods)
    from studio.cli.base_command import add_base_parser

    add_base_parser(methods)
    train.set_defaults(run=lambda args: _print_help(train))
    return train


def add_run_folder_options(parser, default_out):
    """Adds `--out` and `--resume`, which are where a run goes rather than what it is."""
    parser.add_argument("--out", help=f"run folder (default: {default_out})")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")


def _add_textual_inversion(methods):
    from studio.trainers.settings.textual_inversion_settings import TextualInversionSettings

    parser = methods.add_parser(
        "textual-inversion",
        help="learn a new word (placeholder token) for a concept",
        description=(
            "Learn token vectors for a placeholder such as <cat-toy> from a folder "
            "of images, with the model frozen. The run folder gets the config, "
            "checkpoints, TensorBoard logs, sample images, embedding.safetensors and "
            "summary.json. With --resume, only --out is needed: the other settings "
            "come from the run's config.json (--steps, the samples and the intervals "
            "may change)."
        ),
    )
    add_settings_options(parser, TextualInversionSettings)
    add_run_folder_options(parser, f"{DEFAULT_RUNS_FOLDER}/<token>")
    parser.set_defaults(run=run)
    return parser


def _print_help(parser):
    parser.print_help()
    return EXIT_USAGE


def run(args):
    """Runs `studio train textual-inversion`; returns the exit code."""
    from studio.trainers import (
        NonFiniteLossError,
        TextualInversionSettings,
        train_textual_inversion,
    )
    from studio.trainers.textual_inversion.textual_inversion_trainer import EMBEDDING_FILE

    settings = settings_from_options(TextualInversionSettings, args)
    out = args.out or os.path.join(
        DEFAULT_RUNS_FOLDER, "".join(c for c in settings.token if c.isalnum() or c in "-_")
    )
    try:
        summary = train_textual_inversion(settings, out, resume=args.resume)
    except NonFiniteLossError as error:
        print(f"{COMMAND}: {error}", file=sys.stderr)
        return EXIT_NON_FINITE
    print(
        f"Trained {summary['steps']} steps{describe_loss(summary)}. "
        f"Embedding: {os.path.join(out, EMBEDDING_FILE)}"
    )
    return EXIT_OK


def describe_loss(summary):
    """", final loss 0.1234" for a run's summary; "" when no step reported a loss."""
    loss = summary["final_loss"]
    return "" if loss is None else f", final loss {loss:.4f}"
