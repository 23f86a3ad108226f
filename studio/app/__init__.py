"""The Streamlit studio: train, watch, generate, compare and manage embeddings.

`streamlit run streamlit_app.py` opens it. Pages live in `*_page.py`
(one `render()` each), the frame in `studio_app.py`; the other modules are
the pieces the pages share: where the app keeps its files
(`AppDataFolder`), safe uploads, training processes and their status read
from files, cached models. Importing this package imports neither
Streamlit nor Keras.
"""
