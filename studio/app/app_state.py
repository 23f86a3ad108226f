"""The app's per-session state, initialised once per browser session."""

from studio.app.app_data_folder import AppDataFolder

# Keys of `st.session_state` and their first values. Nothing here must
# survive a reload: runs are found again from their folders.
DEFAULTS = {
    "selected_run": None,  # The run the Train page follows (a folder path).
    "generated": None,  # The Generate page's last images: [(png bytes, infotext)].
    "comparison": None,  # The Compare page's last grid: (png bytes, scores).
    "prompt": "a photo of {concept}",
}


def init_session_state():
    """Sets every missing key of `st.session_state` to its default (a guard, not a reset)."""
    import streamlit as st

    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = value


def data_folder():
    """The app's `AppDataFolder`, created if missing."""
    return AppDataFolder.from_environment().ensure()
