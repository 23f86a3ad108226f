"""Starts, stops and resumes training runs as processes that outlive the app."""

import dataclasses
import json
import os
import subprocess
import sys

from studio.trainers.run.run_directory import RunDirectory


def start_training(run_dir, request, environment=None):
    """Starts the training run `request` asks for in `run_dir`, in a new process session.

    The process gets its own session (as a daemon would), so stopping or
    killing the app, or its terminal, leaves training running; the app
    finds it again from the files in `run_dir`. Its output goes to
    `run_dir/train.log`.

    Args:
        run_dir: the run folder (created here; the run writes into it).
        request: `new_run_request(settings)` or `resume_request(...)`.
        environment: extra environment variables for the process.

    Returns:
        The process id.
    """
    os.makedirs(run_dir, exist_ok=True)
    run = RunDirectory(run_dir)
    run.remove_exit_record()
    if not request.get("resume"):
        # Read by the pages until the run writes its own `config.json`.
        run.write_request(request)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
               **(environment or {}))
    # The app's working folder may hold the repository, whose top-level
    # `datasets/` would shadow packages; the process needs none of it.
    env.pop("PYTHONPATH", None)
    with open(run.log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "studio.app.training_process", run_dir, json.dumps(request)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=os.path.dirname(os.path.abspath(run_dir)),
            env=env,
            start_new_session=True,
        )
    return process.pid


def new_run_request(settings):
    """The request of a new run with `settings` (`TextualInversionSettings`, `DreamBoothSettings`)."""
    return {"method": settings.METHOD, "resume": False, "settings": dataclasses.asdict(settings)}


def resume_request(method, cache_dir, **changes):
    """The request that continues a run of `method` ("textual-inversion", "dreambooth").

    `changes`: resumable settings to change, e.g. `steps=800` to extend a
    finished run.
    """
    return {"method": method.replace("-", "_"), "resume": True,
            "settings": {"cache_dir": cache_dir, **changes}}
