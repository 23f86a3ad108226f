"""Shared set-up of the app tests: a fresh data folder, images, the app under AppTest.

Every test points the app at its own data folder (`STUDIO_APP_DATA`), so
nothing is written in the working folder.
"""

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP_SCRIPT = os.path.join(REPOSITORY, "streamlit_app.py")
# The first run imports TensorFlow and builds the tiny model: many seconds
# on a busy two-core machine.
APP_TIMEOUT = 240
PAGES = ("train", "runs", "generate", "compare", "embeddings")


def png_bytes(seed, size=72):
    """A random RGB PNG (`size` pixels square) as bytes."""
    pixels = (np.random.default_rng(seed).random((size, size, 3)) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png_bytes(side=60_000):
    """A tiny PNG whose header declares `side` x `side` RGB pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def page_path(name):
    """The page script of `name`, relative to streamlit_app.py, for `AppTest.switch_page`."""
    return f"studio/app/pages/{name}.py"


def new_app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP_SCRIPT, default_timeout=APP_TIMEOUT)


def messages(app):
    """Every error, warning and exception shown on the page, as text."""
    return ([("error", e.value) for e in app.error]
            + [("warning", e.value) for e in app.warning]
            + [("exception", e.value) for e in app.exception])


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "studio-data"
    monkeypatch.setenv("STUDIO_APP_DATA", str(folder))
    return folder


# --- One training run through the app, shared by the session ---------------

# Samples at step 6 keep the run busy for seconds after its first step.
TRAINING_STEPS = 12
STARTUP_TIMEOUT = 300
TRAINING_TIMEOUT = 300
POLL_SECONDS = 2
APP_PROCESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app_process.py")


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as file:
        return file.read().rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(condition, timeout, app=None, what="", poll=POLL_SECONDS):
    """Polls `condition()` (rerunning `app` first) until true; returns the seen values."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app is not None:
            app.run()
            assert not app.exception, [e.value for e in app.exception]
        if condition():
            return
        time.sleep(poll)
    raise AssertionError(f"Timed out after {timeout} s waiting for {what}")


def progress_values(app):
    return [element.value for element in app.get("progress")]


def click(app, label):
    next(button for button in app.button if button.label == label).click()
    app.run()


@pytest.fixture(scope="session")
def workflow(tmp_path_factory):
    """Trains through the app as a person would; returns what was seen on the way.

    Session-wide: the workflow and browser tests look at the same run.
    """
    from studio.app.run_record import RunRecord

    data = tmp_path_factory.mktemp("workflow") / "studio-data"
    seen = {"data": data}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_APP_DATA", str(data))
        # 1. An app process starts the run, and is killed while it trains.
        app_process = subprocess.Popen(
            [sys.executable, APP_PROCESS, str(TRAINING_STEPS)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            line = app_process.stdout.readline()
            assert line.startswith("RUN "), line
            record = RunRecord(line[4:].strip())
            wait_for(lambda: os.path.exists(os.path.join(record.path, "process.json")),
                     STARTUP_TIMEOUT, what="the training process")
            training_pid = json.load(open(os.path.join(record.path, "process.json")))["pid"]
            # Once it has trained a step, hold it (SIGSTOP) while the app restarts:
            # otherwise a short run may end before the new app draws its Stop button.
            wait_for(lambda: record.progress(), STARTUP_TIMEOUT, what="the first step",
                     poll=0.1)
            os.kill(training_pid, signal.SIGSTOP)
        finally:
            app_process.send_signal(signal.SIGKILL)
            app_process.wait()
        seen.update(record=record, training_alive_after_kill=pid_alive(training_pid))
        seen["status_after_kill"] = record.status().state

        # 2. A restarted app shows the same run on the Train page and stops it.
        try:
            app = new_app()
            app.run()
            seen["restarted_markdown"] = [m.value for m in app.markdown]
            seen["restarted_stop_buttons"] = [b.label for b in app.button if b.label == "Stop"]
            click(app, "Stop")
            seen["stop_file_after_click"] = os.path.exists(os.path.join(record.path, "STOP"))
        finally:
            os.kill(training_pid, signal.SIGCONT)
        wait_for(lambda: not record.status().is_active, TRAINING_TIMEOUT, app,
                 "the run to stop")
        seen["stopped_status"] = record.status()
        seen["stopped_summary"] = record.summary
        seen["stopped_checkpoints"] = [step for step, _ in record.checkpoints()]

        # 3. The Runs page resumes it; the Train page follows it to its end.
        app.switch_page(page_path("runs")).run()
        click(app, "Resume")
        app.switch_page(page_path("train")).run()
        progress = []

        def finished():
            progress.extend(progress_values(app))
            return not record.status().is_active

        wait_for(finished, TRAINING_TIMEOUT, app, "the resumed run to finish")
        app.run()  # The run may have ended after the last rerun drew the page.
        progress.extend(progress_values(app))
        seen["progress_seen"] = progress
        seen["final_status"] = record.status()
        seen["final_markdown"] = [m.value for m in app.markdown]
        seen["final_problems"] = messages(app)
        yield seen
        if pid_alive(training_pid):  # Only on a failed test.
            os.kill(training_pid, signal.SIGKILL)
