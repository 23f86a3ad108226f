"""What the Runs page does to a run folder: delete, rename, clone its settings, extend it."""

import os
import re
import shutil

from studio.errors import InvalidInputError

_SLUG = re.compile(r"[^a-z0-9]+")


def delete_run(record):
    """Removes the run's folder and everything in it.

    Raises:
        InvalidInputError: the run is training (stop it first).
    """
    if record.status().is_active:
        raise InvalidInputError(f"{record.name} is training; stop it before deleting it.")
    shutil.rmtree(record.path)


def rename_run(record, new_name):
    """Renames the run's folder to `new_name` (made safe); returns the new path.

    Paths inside the run's settings that point into its folder (its class
    images) follow it, so that a resume finds them.

    Raises:
        InvalidInputError: the run is training, the name is empty, or a
            run of that name exists.
    """
    slug = _SLUG.sub("-", new_name.strip().lower()).strip("-")
    if not slug:
        raise InvalidInputError(f"A run's name needs letters or digits. Received: {new_name!r}")
    if record.status().is_active:
        raise InvalidInputError(f"{record.name} is training; stop it before renaming it.")
    target = os.path.join(os.path.dirname(record.path), slug)
    if os.path.exists(target):
        raise InvalidInputError(f"A run named {slug!r} exists already; choose another name.")
    old = record.path
    os.rename(old, target)
    from studio.trainers.run.run_directory import RunDirectory

    run = RunDirectory(target)
    config = run.read_config(default=None)
    if config is not None:
        moved = {key: target + value[len(old):] for key, value in config.items()
                 if isinstance(value, str) and (value == old or value.startswith(old + os.sep))}
        if moved:
            run.write_config({**config, **moved})
    return target


def train_form_values(record, field_key, model_specific=("init_word", "instance_prompt",
                                                         "resolution")):
    """`(method, {widget key: value})` that put the run's settings into the Train form.

    Args:
        record: the run's `RunRecord`.
        field_key: `train_page.field_key(method, name)`.
        model_specific: settings whose key also names the model.
    """
    config = record.config
    if record.method == "textual-inversion":
        method = "textual-inversion"
    else:
        method = "dreambooth-lora" if config.get("lora_rank") else "dreambooth-full"
    model = config.get("model")
    values = {}
    for name, value in config.items():
        if name in ("method", "history", "model", "data"):
            continue
        key = field_key(method, name)
        if name in model_specific:
            key += f"_{model}"
        values[key] = value
    return method, values
