"""The Compare page (see `studio.app.compare_page`)."""

from studio.app.compare_page import render

render()
