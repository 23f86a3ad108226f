"""The Runs page (see `studio.app.runs_page`)."""

from studio.app.runs_page import render

render()
