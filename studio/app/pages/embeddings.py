"""The Embeddings page (see `studio.app.embeddings_page`)."""

from studio.app.embeddings_page import render

render()
