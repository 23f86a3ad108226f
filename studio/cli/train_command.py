"""`studio train textual-inversion`: learn a placeholder token from a folder of images.

A thin shell over `studio.trainers.train_textual_inversion`: its options
are built from `TextualInversionSettings`' fields. The `studio train`
group itself is made in `studio.cli.main`.
"""

import os
import sys

from studio.cli.run_folder_options import add_run_folder_options, describe_loss
from studio.cli.settings_options import add_settings_options, settings_from_options

# Exit codes: done, stopped by a non-finite loss, bad usage.
EXIT_OK = 0
EXIT_NON_FINITE = 1
EXIT_USAGE = 2
DEFAULT_RUNS_FOLDER = "runs"
COMMAND = "studio train textual-inversion"


def add_method_parser(methods):
    """Registers `textual-inversion` in the `studio train` group; returns its parser."""
    from studio.trainers.settings.textual_inversion_settings import TextualInversionSettings

    parser = methods.add_parser(
        "textual-inversion",
        help="learn a new word (placeholder token) for a concept",
        description=(
            "Learn token vectors for a placeholder such as <cat-toy> from a folder "
            "of images, with the model frozen. The run folder gets the config, "
            "checkpoints, TensorBoard logs, sample images, embedding.safetensors and "
            "summary.json. With --resume, only --out is needed: the other settings "
            "come from the run's config.json (--steps, --lr, the samples and the "
            "intervals may change)."
        ),
    )
    add_settings_options(parser, TextualInversionSettings)
    add_run_folder_options(parser, f"{DEFAULT_RUNS_FOLDER}/<token>")
    parser.set_defaults(run=run)
    return parser


def run(args):
    """Runs `studio train textual-inversion`; returns the exit code."""
    from studio.trainers.settings.textual_inversion_settings import TextualInversionSettings

    # Checked before Keras is imported: a mistyped option fails at once.
    settings = settings_from_options(TextualInversionSettings, args)
    from studio.trainers import NonFiniteLossError, train_textual_inversion
    from studio.trainers.textual_inversion.textual_inversion_trainer import EMBEDDING_FILE

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

