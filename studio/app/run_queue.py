"""Runs waiting for their turn: started one after another as the runs before them end."""

import os
import time

from studio.files.json_file import read_json_or_none, write_json

QUEUE_FILE = ".queue.json"


class RunQueue:
    """The app's queue of training runs, kept in the runs folder (`.queue.json`).

    Each entry is a run folder and the request that starts it
    (`training_launcher.new_run_request`). `start_next` starts the first
    entry once no run is training, so a queued run starts whichever page
    is open, or at the next page draw after a reload.

    Args:
        runs_folder: the app's runs folder.
    """

    def __init__(self, runs_folder):
        self.runs_folder = os.fspath(runs_folder)
        self.path = os.path.join(self.runs_folder, QUEUE_FILE)

    def entries(self):
        """`[{"run_dir", "request", "queued"}]`, first to start first."""
        entries = read_json_or_none(self.path)
        return entries if isinstance(entries, list) else []

    def add(self, run_dir, request):
        entries = self.entries()
        entries.append({"run_dir": os.fspath(run_dir), "request": request, "queued": time.time()})
        self._write(entries)

    def remove(self, run_dir):
        self._write([entry for entry in self.entries() if entry["run_dir"] != run_dir])

    def start_next(self, is_training):
        """Starts the first queued run when `is_training()` is False; returns its folder or None."""
        from studio.app.training_launcher import start_training

        entries = self.entries()
        if not entries or is_training():
            return None
        entry = entries[0]
        # Out of the queue first: a second page drawing now must not start it again.
        self._write(entries[1:])
        start_training(entry["run_dir"], entry["request"])
        return entry["run_dir"]

    def _write(self, entries):
        os.makedirs(self.runs_folder, exist_ok=True)
        write_json(self.path, entries)
