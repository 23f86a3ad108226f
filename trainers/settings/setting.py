"""`setting(...)`: a dataclass field of run settings, with what the CLI and a resume need."""

import dataclasses
import types
import typing


def setting(default=None, help="", *, resumable=False, required=False, at_least=None,
            choices=None, default_text=None, option=None, recorded=True):
    """A settings field: its default and the metadata that describes it.

    The command-line option is built from the field (`studio.cli`'s
    `add_settings_options`): its name from the field's name, its type from
    the annotation, its help from `help` followed by the default, which is
    never repeated in `help`.

    Args:
        default: the value when none is given (None: not set).
        help: what the setting does, in a few words.
        resumable: whether a resumed run may change it (the other settings
            define the run).
        required: whether a run needs a value.
        at_least: the smallest allowed value (0 or 1), or None. None
            values are not checked.
        choices: the allowed values, or None.
        default_text: what the default means in words, where the value
            says too little ("the model's" for None).
        option: the command-line option when it is not the field's name
            with dashes (e.g. "--sample-prompt" for `sample_prompts`).
        recorded: whether the run's `config.json` keeps it; settings that
            say where files are on this machine (weights, caches) are not.

    Returns:
        A `dataclasses.Field`.
    """
    metadata = {
        "help": help,
        "resumable": resumable,
        "required": required,
        "at_least": at_least,
        "choices": choices,
        "default_text": default_text,
        "option": option,
        "recorded": recorded,
    }
    return dataclasses.field(default=default, metadata=metadata)


def option_name(field):
    """The command-line option of a settings field: grad_accum -> "--grad-accum"."""
    if isinstance(field, str):
        return "--" + field.replace("_", "-")
    return field.metadata.get("option") or "--" + field.name.replace("_", "-")


def value_type(field):
    """The type of a settings field's values: `int | None` -> int; `list[str] | None` -> list."""
    annotation = field.type
    kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)]
    kind = kinds[0] if isinstance(annotation, types.UnionType) and kinds else annotation
    return typing.get_origin(kind) or kind


def default_text(field):
    """The field's default in words ("the model's", "5e-03"), or None when it has none to show."""
    shown = field.metadata.get("default_text")
    if shown is None and value_type(field) is not bool and field.default is not None:
        shown = f"{field.default:g}" if isinstance(field.default, float) else field.default
    return shown


def help_text(field):
    """The field's help followed by its default, as `--help` and the app show it."""
    text = field.metadata["help"]
    if field.metadata.get("resumable"):
        text += "; a resumed run may change it" if "resumed run" not in text else ""
    shown = default_text(field)
    return f"{text} (default: {shown})" if shown is not None else text
