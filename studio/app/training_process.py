"""The training process the app starts: one training run, recorded in the run folder.

    python -m studio.app.training_process RUN_DIR REQUEST_JSON

REQUEST_JSON is `{"method": "textual_inversion", "resume": false,
"settings": {...}}`: the fields of the method's settings dataclass (a
resumed run takes its own from its `config.json`, with these on top). The
process calls the library (`studio.trainers.train_textual_inversion` or
`train_dreambooth`) and keeps what the app needs to tell the run's status
from files alone, whether or not the app is still running:
`process.json` (this process's id and start time) when it starts,
`exit.json` (exit code and error message) when it ends. SIGTERM asks for a
clean stop (the run's `STOP` file), as the app's Stop button does.
"""

import json
import os
import signal
import sys
import time
import traceback

from studio.files.jax_compilation_cache import use_jax_compilation_cache
from studio.trainers.run.run_directory import RunDirectory

# Exit codes, as `studio train ...`'s: done, stopped by a non-finite loss,
# a user error; and one for an exception the run did not handle.
EXIT_OK = 0
EXIT_NON_FINITE = 1
EXIT_USAGE = 2
EXIT_CRASHED = 3
EXIT_INTERRUPTED = 130


def process_start_time(pid):
    """The start time of process `pid` in clock ticks since boot (Linux), or None.

    With the id it tells the same process from a later one that reused the id.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            fields = file.read().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def command_line(run_dir, request):
    """The `studio` command line that does what `request` asks (kept in `process.json`)."""
    method = request["method"].replace("_", "-")
    resume = ["--resume"] if request["resume"] else []
    return ["studio", "train", method, "--out", run_dir, *resume]


def main(argv=None):
    """Runs the training REQUEST_JSON asks for in the run folder RUN_DIR; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2:
        print("usage: python -m studio.app.training_process RUN_DIR REQUEST_JSON", file=sys.stderr)
        return EXIT_USAGE
    run_dir, request = argv[0], json.loads(argv[1])
    use_jax_compilation_cache()
    os.makedirs(run_dir, exist_ok=True)
    run = RunDirectory(run_dir)
    run.remove_exit_record()
    from studio.trainers.run.run_phase import STARTING, phase_listener

    run.write_phase(STARTING, new_session=True)
    pid = os.getpid()
    now = time.time()
    earlier = run.read_process_record() or {} if request["resume"] else {}
    run.write_process_record({
        "pid": pid,
        "start_time": process_start_time(pid),
        "started": now,
        # When the run first started: "started" is this session's.
        "first_started": earlier.get("first_started") or earlier.get("started") or now,
        "command": command_line(run_dir, request),
    })

    def request_stop(signum, frame):
        run.request_stop()

    signal.signal(signal.SIGTERM, request_stop)
    # TensorFlow's C++ start-up chatter is noise in the log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with phase_listener(run.write_phase):
        code, error = run_training(run_dir, request)
    sys.stdout.flush()
    sys.stderr.flush()
    run.write_exit_record({"code": code, "error": error, "ended": time.time()})
    return code


def run_training(run_dir, request):
    """Runs the request's training run in `run_dir`; returns (exit code, error message or None).

    Errors are printed to the log as `studio train` prints them.
    """
    from studio.errors import is_user_error, user_error_message
    from studio.trainers.run.non_finite_loss_error import NonFiniteLossError

    command = " ".join(command_line(run_dir, request)[:3])
    try:
        settings = request_settings(run_dir, request)
        summary = train(settings, run_dir, request["resume"])
    except KeyboardInterrupt:
        print("studio: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED, "interrupted"
    except NonFiniteLossError as exception:
        print(f"{command}: {exception}", file=sys.stderr)
        return EXIT_NON_FINITE, str(exception)
    except Exception as exception:
        if is_user_error(exception):
            message = user_error_message(exception)
            print(f"studio train: error: {message}", file=sys.stderr)
            return EXIT_USAGE, message
        traceback.print_exc()  # A bug: keep its traceback in the log.
        return EXIT_CRASHED, f"{type(exception).__name__}: {exception}"
    except BaseException as exception:  # A bug: keep its traceback in the log.
        traceback.print_exc()
        return EXIT_CRASHED, f"{type(exception).__name__}: {exception}"
    loss = summary["final_loss"]
    print(f"Trained {summary['steps']} steps" + ("" if loss is None else f", final loss {loss:.4f}")
          + f". Run: {run_dir}")
    return EXIT_OK, None


def request_settings(run_dir, request):
    """The settings object of `request`: a resumed run's own, with the request's on top."""
    from studio.trainers.settings.run_settings_files import SETTINGS_CLASSES

    settings_class = SETTINGS_CLASSES[request["method"]]
    if request["resume"]:
        stored = RunDirectory(run_dir).read_config()
        return settings_class.from_config(stored, **request["settings"])
    return settings_class(**request["settings"])


def train(settings, run_dir, resume):
    """Runs the library's training function of `settings`' method; returns the summary."""
    from studio.trainers import train_dreambooth, train_textual_inversion

    functions = {"textual_inversion": train_textual_inversion, "dreambooth": train_dreambooth}
    return functions[settings.METHOD](settings, run_dir, resume=resume)


if __name__ == "__main__":
    sys.exit(main())
