"""The app's frame: page set-up, navigation, sidebar; each page draws itself."""

import os

import streamlit as st

from studio.app.app_state import data_folder, init_session_state
from studio.app.navigation import build_pages
from studio.files.jax_compilation_cache import use_jax_compilation_cache

APP_TITLE = "Keras SD Studio"
# The key of the last element of every page: `.st-key-page-drawn` in the browser.
PAGE_DRAWN_KEY = "page-drawn"


def configure_server():
    """Options the app sets itself, wherever it is started from: no Deploy button."""
    from streamlit import config

    config.set_option("client.toolbarMode", "minimal")


def run():
    """Draws the app for this script run (the body of `streamlit_app.py`)."""
    configure_server()
    use_jax_compilation_cache()
    st.set_page_config(page_title=APP_TITLE, page_icon=":material/palette:", layout="wide")
    init_session_state()
    navigation = st.navigation(build_pages())
    _sidebar()
    navigation.run()
    # The page has been drawn to its end (the browser test times first draws by it).
    st.container(key=PAGE_DRAWN_KEY, height=1, border=False)


def _sidebar():
    from studio.app.run_queue import RunQueue
    from studio.app.run_record import list_runs

    with st.sidebar:
        st.markdown(f"### {APP_TITLE}")
        st.caption("Teach Stable Diffusion new concepts with Keras.")
        data = data_folder()
        active = [record for record in list_runs(data.runs) if record.status().is_active]
        started = RunQueue(data.runs).start_next(lambda: bool(active))
        if started:
            st.toast(f"Started the queued run {os.path.basename(started)}")
            active = [record for record in list_runs(data.runs) if record.status().is_active]
        if active:
            st.info(f"{len(active)} run{'s' if len(active) > 1 else ''} training: "
                    + ", ".join(record.name for record in active), icon=":material/model_training:")
        st.caption(f"Data folder: `{data.root}`")
