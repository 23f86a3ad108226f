"""Starts, stops and resumes training runs as processes that outlive the app."""

import os
import subprocess
import sys

from studio.trainers.run.run_directory import RunDirectory

# Settings whose option is not the setting's name with dashes.
OPTION_NAMES = {"sample_prompts": "--sample-prompt"}


def start_training(run_dir, studio_args, environment=None):
    """Starts `studio STUDIO_ARGS` for `run_dir` in a new process session.

    The process gets its own session (as a daemon would), so stopping or
    killing the app, or its terminal, leaves training running; the app
    finds it again from the files in `run_dir`. Its output goes to
    `run_dir/train.log`.

    Args:
        run_dir: the run folder (created here; the command writes the run
            into it).
        studio_args: the `studio` command's arguments, e.g.
            `["train", "textual-inversion", "--out", run_dir, ...]`.
        environment: extra environment variables for the process.

    Returns:
        The process id.
    """
    os.makedirs(run_dir, exist_ok=True)
    run = RunDirectory(run_dir)
    run.remove_exit_record()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
               **(environment or {}))
    # The app's working folder may hold the repository, whose top-level
    # `datasets/` would shadow packages; the process needs none of it.
    env.pop("PYTHONPATH", None)
    with open(run.log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "studio.app.training_process", run_dir, "--", *studio_args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=os.path.dirname(os.path.abspath(run_dir)),
            env=env,
            start_new_session=True,
        )
    return process.pid


def textual_inversion_args(run_dir, settings, cache_dir):
    """`studio` arguments of a textual-inversion run from the Train page's settings."""
    args = ["train", "textual-inversion", "--out", run_dir, "--cache-dir", cache_dir]
    return args + _options(settings)


def dreambooth_args(run_dir, settings, cache_dir):
    """`studio` arguments of a DreamBooth run from the Train page's settings."""
    args = ["train", "dreambooth", "--out", run_dir, "--cache-dir", cache_dir]
    return args + _options(settings)


def resume_args(run_dir, method, cache_dir):
    """`studio` arguments that continue the run in `run_dir` from its last checkpoint."""
    return ["train", method, "--out", run_dir, "--resume", "--cache-dir", cache_dir]


def _options(settings):
    """`{"init_word": "toy", "lora_feed_forward": True}` -> `--init-word toy --lora-feed-forward`."""
    args = []
    for key, value in settings.items():
        if value is None or value is False:
            continue
        option = OPTION_NAMES.get(key) or "--" + key.replace("_", "-")
        if value is True:
            args.append(option)
        elif isinstance(value, (list, tuple)):
            for item in value:
                args += [option, str(item)]
        else:
            args += [option, str(value)]
    return args
