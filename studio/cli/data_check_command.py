"""`studio data check DIR`: report what in a folder of images can be trained on.

Prints the folder's report (every unusable file with its reason) and writes
a contact sheet PNG of the usable images as the model will see them, after
the centre crop, so that a person can look before training. The folder
itself is only read.
"""

import logging
import os

from studio.errors import InvalidInputError

# Exit codes: every image usable, or some files unusable (training would
# stop unless told to skip them). A folder with no usable image is an error.
EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
CONTACT_SHEET_SUFFIX = "-contact-sheet.png"


def add_parser(subparsers):
    """Registers `data check DIR --resolution N [--min-size N] [--out PNG]`."""
    data = subparsers.add_parser(
        "data",
        help="check a folder of training images",
        description="Work with folders of training images.",
    )
    actions = data.add_subparsers(dest="data_command", metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="report unusable files and write a contact sheet",
        description=(
            "Check every image in DIR the way training reads it, print one report "
            "of the files that cannot be used (and why), and write a contact sheet "
            "PNG of the usable images as the model will see them. DIR is not "
            f"modified. Exit code {EXIT_OK}: all usable; {EXIT_PROBLEMS}: some "
            f"files cannot be used; {EXIT_USAGE}: no usable image."
        ),
    )
    check.add_argument("dir", metavar="DIR", help="the folder of images")
    check.add_argument("--resolution", type=int, default=512,
                       help="side of the square training images (default: 512)")
    check.add_argument("--min-size", type=int, default=None,
                       help="smallest accepted shorter side in pixels "
                       "(default: half the resolution)")
    check.add_argument("--background", default="white",
                       help="colour of transparent areas: a name or #rrggbb (default: white)")
    check.add_argument("--out", default=None,
                       help=f"contact sheet path (default: ./<DIR name>{CONTACT_SHEET_SUFFIX})")
    check.set_defaults(run=run)
    data.set_defaults(run=lambda args: _print_help(data))
    return data


def _print_help(parser):
    parser.print_help()
    return EXIT_USAGE


def run(args):
    """Runs `studio data check`; returns the exit code."""
    from studio.cli.output_location import writing_to
    from studio.datasets import image_folder
    from studio.datasets.contact_sheet import make_contact_sheet
    from studio.images import save_png

    out = args.out or os.path.join(
        os.getcwd(), os.path.basename(os.path.abspath(args.dir)) + CONTACT_SHEET_SUFFIX
    )
    _check_outside(out, args.dir)
    # The report is printed below; the warning that skipping logs would
    # print it a second time.
    previous_level = image_folder.logger.level
    image_folder.logger.setLevel(logging.ERROR)
    try:
        folder = image_folder.ImageFolder(
            args.dir,
            resolution=args.resolution,
            min_size=args.min_size,
            background=args.background,
            # Check everything and show what is usable; training itself stops.
            skip_invalid=True,
        )
    except NotADirectoryError as error:
        # A usage error like a missing folder: one line, no traceback.
        raise InvalidInputError(str(error)) from None
    finally:
        image_folder.logger.setLevel(previous_level)
    print(folder.report.format())
    sheet = make_contact_sheet(folder.images, folder.names)
    with writing_to(out):
        save_png(sheet, out)
    print(f"Contact sheet of the {len(folder)} usable images: {out}")
    return EXIT_OK if folder.report.ok else EXIT_PROBLEMS


def _check_outside(out, folder):
    out_folder = os.path.realpath(os.path.dirname(os.path.abspath(out)))
    folder = os.path.realpath(folder)
    if os.path.commonpath([out_folder, folder]) == folder:
        raise InvalidInputError(
            "The contact sheet must be written outside the image folder, which is "
            f"never modified; pass --out. Received: {out!r} inside {folder!r}"
        )
