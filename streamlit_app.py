"""Keras SD Studio in the browser: `streamlit run streamlit_app.py`.

The frame and pages live in the `studio.app` package.
"""

import os
import sys

# Streamlit puts this script's folder first on sys.path; in a checkout that
# is the repository, whose top-level `datasets/`, `trainers/` and `prompts/`
# folders would shadow installed packages (Hugging Face `datasets`).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path
               if os.path.abspath(entry or os.getcwd()) != _HERE]

from studio.app.studio_app import run  # noqa: E402

run()
