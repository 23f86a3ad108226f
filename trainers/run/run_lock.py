"""One training process at a time in a run folder: a lock the kernel releases."""

import contextlib
import fcntl
import os

from studio.errors import StudioError
from studio.files.atomic_write import remove_stale_temporaries

# Hidden: not a result. It stays in a run folder that holds a run.
LOCK_FILE = ".lock"


class RunLockedError(StudioError):
    """Another process is training in the run folder."""


class RunLock:
    """An exclusive `flock` on `RUN/.lock`, held while a process trains in the run folder.

    Two processes training in one folder would interleave their progress
    lines, checkpoints and results; the second to come is refused at once.
    The lock belongs to the open file, so the kernel releases it when the
    process ends however it ends (`kill -9` included): no stale lock to
    remove by hand. Taking it also removes the temporary files that killed
    writers left in the folder (`remove_stale_temporaries`).

    When `run_file` does not exist on release (the run failed before it
    recorded itself), the lock file goes again, and so does the folder
    when the lock created it and it is empty.

    Args:
        folder: the run folder (created if missing).
        run_file: the file that tells a folder holds a run (its config).

    Raises (on entering):
        RunLockedError: another process holds the lock.

    Example:

    ```python
    with RunLock("runs/cat", "runs/cat/config.json"):
        ...  # train
    ```
    """

    def __init__(self, folder, run_file):
        self.folder = os.fspath(folder)
        self.run_file = os.fspath(run_file)
        self.path = os.path.join(self.folder, LOCK_FILE)
        self._file = None
        self._created_folder = False

    def __enter__(self):
        self._created_folder = not os.path.isdir(self.folder)
        created_file = False
        file = None
        try:
            os.makedirs(self.folder, exist_ok=True)
            created_file = not os.path.exists(self.path)
            file = open(self.path, "a+", encoding="utf-8")
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.seek(0)
                holder = file.read().strip()
                file.close()
                file = None
                raise RunLockedError(
                    f"{self.folder} is in use: another training process "
                    f"{f'(pid {holder}) ' if holder.isdigit() else ''}is training in it. "
                    "Wait for it to end (or stop it), or choose another --out. "
                    f"Received: --out {self.folder}"
                ) from None
            file.seek(0)
            file.truncate()
            file.write(f"{os.getpid()}\n")
            file.flush()
        except OSError:
            # Cannot write the folder (read-only, full): leave it as it was.
            if file is not None:
                with contextlib.suppress(OSError):
                    file.close()
                if created_file:
                    with contextlib.suppress(OSError):
                        os.remove(self.path)
            if self._created_folder:
                with contextlib.suppress(OSError):
                    os.rmdir(self.folder)
            raise
        self._file = file
        remove_stale_temporaries(self.folder)
        return self

    def __exit__(self, *exc_info):
        file, self._file = self._file, None
        if not os.path.isfile(self.run_file):
            # No run was recorded: leave nothing behind. Removed while
            # still held, so no other process locks the removed file.
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            if self._created_folder:
                with contextlib.suppress(OSError):
                    os.rmdir(self.folder)  # Only when empty.
        file.close()  # Releases the lock.
        return False
