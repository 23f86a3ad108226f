"""What the training commands share beyond their settings: run folder options, result line."""


def add_run_folder_options(parser, default_out):
    """Adds `--out` and `--resume`: where a run goes, rather than what it is.

    `default_out` describes `--out`'s default in the help.
    """
    parser.add_argument("--out", help=f"run folder (default: {default_out})")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")


def describe_loss(summary):
    """", final loss 0.1234" for a run's summary; "" when no step reported a loss."""
    loss = summary["final_loss"]
    return "" if loss is None else f", final loss {loss:.4f}"
