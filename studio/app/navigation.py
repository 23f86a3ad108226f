"""The app's pages, so that pages can link to each other."""

import os

import streamlit as st

PAGES_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pages")
# (url path and page script name, title, icon), by section.
SECTIONS = {
    "Teach": [
        ("train", "Train", ":material/school:"),
        ("runs", "Runs", ":material/monitoring:"),
    ],
    "Use": [
        ("generate", "Generate", ":material/palette:"),
        ("compare", "Compare", ":material/grid_view:"),
        ("embeddings", "Embeddings", ":material/token:"),
    ],
}
_PAGES = {}


def build_pages():
    """`{section: [st.Page]}` for `st.navigation`; the first page is the default.

    Pages are scripts (`pages/train.py`, ...), not callables, so that
    `AppTest.switch_page` can open each one.
    """
    _PAGES.clear()
    sections = {}
    for section, entries in SECTIONS.items():
        for url_path, title, icon in entries:
            _PAGES[url_path] = st.Page(
                page_script(url_path), title=title, icon=icon, url_path=url_path,
                default=not _PAGES,
            )
            sections.setdefault(section, []).append(_PAGES[url_path])
    return sections


def page_script(url_path):
    """The page script of `url_path`: `.../studio/app/pages/train.py`."""
    return os.path.join(PAGES_FOLDER, f"{url_path}.py")


def page(url_path):
    """The `st.Page` of `url_path` ("runs"), for `st.page_link` and `st.switch_page`."""
    return _PAGES[url_path]
