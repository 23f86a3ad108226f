"""A training command's settings: defaults, then a resumed run's config, then the options."""


def option_name(key):
    """The command-line option of a setting: "grad_accum" -> "--grad-accum"."""
    return "--" + key.replace("_", "-")


def resolve_run_settings(args, defaults, resumable, required, command, positive=()):
    """Merges a `studio train ...` command's settings and checks them.

    Options left at None on the command line take the resumed run's stored
    value (with `--resume`), else the default; a resumed run may change only
    the `resumable` settings, since the others define it.

    Args:
        args: the parsed `argparse.Namespace`; its `resume` and `out`.
        defaults: dict setting -> default value (None: not set).
        resumable: the settings a resumed run may change.
        required: the settings that must end up set.
        command: the command's name for messages, e.g. "studio train dreambooth".
        positive: the integer settings that must be at least 1.

    Returns:
        The settings dict.

    Raises:
        ValueError: `--resume` without `--out`, a resumed run given another
            value of a setting that defines it, a required setting missing,
            or a `positive` setting below 1.
        FileNotFoundError: `--resume` of a folder that holds no run.
    """
    given = {key: getattr(args, key) for key in defaults if getattr(args, key, None) is not None}
    settings = dict(defaults)
    if args.resume:
        from studio.trainers.run_directory import RunDirectory

        if not args.out:
            raise ValueError("--resume needs --out, the run folder to continue. Received: no --out")
        stored = RunDirectory(args.out).read_config()
        settings.update({key: stored[key] for key in settings if key in stored})
        changed = [
            f"{option_name(key)} {value!r} (the run has {settings[key]!r})"
            for key, value in given.items()
            if key not in resumable and value != settings[key]
        ]
        if changed:
            raise ValueError(
                "A resumed run keeps its settings; only "
                f"{', '.join(option_name(key) for key in resumable)} may change. "
                f"Received: {'; '.join(changed)}"
            )
    settings.update(given)
    missing = [option_name(key) for key in required if not settings[key]]
    if missing:
        raise ValueError(f"`{command}` needs {', '.join(missing)}. Received: none")
    for key in positive:
        if settings[key] < 1:
            raise ValueError(f"{option_name(key)} must be at least 1. Received: {settings[key]}")
    return settings
