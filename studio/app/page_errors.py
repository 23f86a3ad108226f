"""Shows errors on the page as messages, never as tracebacks."""

import contextlib
import logging
import traceback

from studio.errors import StudioError

logger = logging.getLogger(__name__)

# What a person can fix: shown as the message alone.
USER_ERRORS = (StudioError, FileNotFoundError, NotADirectoryError, ValueError,
               PermissionError, KeyError)


@contextlib.contextmanager
def errors_as_messages(action="That"):
    """Turns exceptions raised inside the block into `st.error` messages.

    User errors show their message; anything else (a bug) shows a short
    sentence, with the traceback logged and folded away for a bug report.
    Streamlit's own control flow (`st.rerun`, `st.stop`) passes through: it
    is not an `Exception`.

    Args:
        action: what was being done, for the message ("Generating").
    """
    import streamlit as st

    try:
        yield
    except USER_ERRORS as error:
        st.error(f"{action} did not work: {_message(error)}", icon=":material/error:")
    except Exception as error:  # A bug: say so plainly, keep the details.
        logger.exception("%s failed", action)
        st.error(
            f"{action} failed unexpectedly ({type(error).__name__}: {_message(error)}). "
            "This is a bug in the studio; the details below help to report it.",
            icon=":material/bug_report:",
        )
        with st.expander("Details for a bug report"):
            st.code("".join(traceback.format_exception(error)), language=None)


def _message(error):
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error) or type(error).__name__
