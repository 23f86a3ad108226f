"""Command-line options built from a settings dataclass's fields, and settings from them.

`add_settings_options(parser, TextualInversionSettings)` adds one option
per field: `--grad-accum` for `grad_accum`, its type from the annotation,
its help and choices from the field's metadata, the default rendered from
the field. `settings_from_options` merges defaults, a resumed run's
`config.json` and the options given, in that order.
"""

import argparse
import dataclasses

from studio.errors import SettingsError


def add_settings_options(parser, settings_class, skip=()):
    """Adds an option to `parser` for each field of `settings_class` not in `skip`.

    Options left out of a command line are absent from the parsed
    namespace (`argparse.SUPPRESS`), so that a resumed run can tell the
    options given from the defaults. A bool field defaulting to False is a
    flag (`--remat`); one defaulting to True is turned off by `--no-NAME`.
    A list field is repeated (`--sample-prompt A --sample-prompt B`).
    """
    from studio.trainers.settings.setting import help_text, option_name, value_type

    # Required settings first, as a reader of `--help` needs them first.
    fields = sorted(dataclasses.fields(settings_class),
                    key=lambda field: not field.metadata.get("required"))
    for field in fields:
        if field.name in skip or "help" not in field.metadata:
            continue
        kind = value_type(field)
        options = {"dest": field.name, "default": argparse.SUPPRESS,
                   "help": help_text(field)}
        name = option_name(field)
        if kind is bool:
            if field.default is True:
                name = "--no-" + field.name.replace("_", "-")
                options["action"] = "store_false"
            else:
                options["action"] = "store_true"
        elif kind is list:
            options.update(action="append", type=str, metavar=name[2:].replace("-", "_").upper())
        else:
            options["type"] = kind
            if field.metadata.get("choices"):
                options["choices"] = field.metadata["choices"]
        parser.add_argument(name, **options)


def given_settings(args, settings_class):
    """The settings given on the command line: field name -> value."""
    names = {field.name for field in dataclasses.fields(settings_class)}
    return {key: value for key, value in vars(args).items() if key in names}


def settings_from_options(settings_class, args):
    """The run's settings: defaults, then the resumed run's config, then the options.

    Args:
        settings_class: the method's settings dataclass.
        args: the parsed namespace, with `out` and `resume`.

    Returns:
        The validated settings.

    Raises:
        SettingsError: `--resume` without `--out`, or invalid settings.
        FileNotFoundError: `--resume` of a folder that holds no run.
    """
    given = given_settings(args, settings_class)
    if args.resume:
        from studio.trainers.run.run_directory import RunDirectory

        if not args.out:
            raise SettingsError("--resume needs --out, the run folder to continue. Received: no --out")
        stored = RunDirectory(args.out).read_config()
        settings = settings_class.from_config(stored, **given)
        settings.check_resume(stored)
    else:
        settings = settings_class(**given)
    return settings.validate()
