"""Shared set-up of the app tests: a fresh data folder, images, the app under AppTest.

Every test points the app at its own data folder (`STUDIO_APP_DATA`), so
nothing is written in the working folder.
"""

import io
import os

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
