"""Ctrl-C (a notebook's stop button) ends a training run cleanly after the current step."""

import logging
import signal
import threading

logger = logging.getLogger(__name__)


class InterruptStop:
    """While entered, the first SIGINT asks the run to stop; a second one interrupts at once.

    A notebook's stop button and Ctrl-C in a terminal send SIGINT, which
    Python turns into a `KeyboardInterrupt` wherever the run happens to
    be, possibly between a step's weight update and its step count. This
    context manager turns the first one into a request that `StopRequest`
    answers after the current step, as it answers a `STOP` file: the run
    ends with a final checkpoint, its results and its summary, and
    `resume=True` continues it. A second SIGINT raises `KeyboardInterrupt`
    at once (the run then resumes from its last periodic checkpoint).

    Signal handlers can only be set from the main thread; elsewhere it
    does nothing and SIGINT keeps its usual meaning.

    Attributes:
        requested: True once a SIGINT has asked for a stop.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            # None: a handler not set from Python, which could not be put back.
            if previous is not None:
                self._previous = previous
                signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info):
        self._restore()
        return False

    def _handle(self, signum, frame):
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("Interrupted: the run stops after this step, with a checkpoint "
                       "(interrupt again to stop at once).")

    def _restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
