"""The training process the app starts: `studio train ...`, recorded in the run folder.

    python -m studio.app.training_process RUN_DIR -- train textual-inversion ...

Runs the `studio` command in this process and keeps what the app needs to
tell the run's status from files alone, whether or not the app is still
running: `process.json` (this process's id and start time) when it starts,
`exit.json` (exit code and error message) when it ends. SIGTERM asks for a
clean stop (the run's `STOP` file), as the app's Stop button does.
"""

import os
import signal
import sys
import time
import traceback

from studio.trainers.run.run_directory import RunDirectory

# The exit code recorded for an exception the command did not handle.
EXIT_CRASHED = 3


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


def main(argv=None):
    """Runs `studio ARGS` for the run folder RUN_DIR; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[1] != "--":
        print("usage: python -m studio.app.training_process RUN_DIR -- STUDIO_ARGS...",
              file=sys.stderr)
        return 2
    run_dir, command = argv[0], argv[2:]
    os.makedirs(run_dir, exist_ok=True)
    run = RunDirectory(run_dir)
    run.remove_exit_record()
    pid = os.getpid()
    run.write_process_record({
        "pid": pid,
        "start_time": process_start_time(pid),
        "started": time.time(),
        "command": ["studio", *command],
    })

    def request_stop(signum, frame):
        run.request_stop()

    signal.signal(signal.SIGTERM, request_stop)

    from studio.cli.main import main as studio_main

    error = None
    try:
        code = studio_main(command)
    except SystemExit as exit:  # argparse's usage errors.
        code = exit.code if isinstance(exit.code, int) else 2
    except BaseException as exception:  # A bug: keep its traceback in the log.
        traceback.print_exc()
        code = EXIT_CRASHED
        error = f"{type(exception).__name__}: {exception}"
    sys.stdout.flush()
    sys.stderr.flush()
    if code and error is None:
        error = last_error_line(run.log_path)
    run.write_exit_record({"code": code, "error": error, "ended": time.time()})
    return code


def last_error_line(log_path):
    """The message of the last `studio ...: error:` line of the log, or its last line."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as file:
            lines = [line.rstrip() for line in file if line.strip()]
    except OSError:
        return None
    for line in reversed(lines):
        if ": error: " in line:
            return line.split(": error: ", 1)[1]
    return lines[-1] if lines else None


if __name__ == "__main__":
    sys.exit(main())
