"""The Generate page (see `studio.app.generate_page`)."""

from studio.app.generate_page import render

render()
