"""The Train page (see `studio.app.train_page`)."""

from studio.app.train_page import render

render()
