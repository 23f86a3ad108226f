"""Runs the notebooks of notebooks/ in a Jupyter kernel of this environment, as CI does.

`run_notebook(name, folder, **parameters)` executes a notebook with nbclient
in `folder` (its working directory), with the cell tagged "parameters"
(papermill's convention) given the values the test passes: the cell's
own assignments stay, the test's follow them. Every value must be one the
notebook defines, so renaming a parameter fails the test rather than
silently running the notebook's full-size default. A cell that raises
fails the test with the cell and its traceback.
"""

import ast
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
PARAMETERS_TAG = "parameters"
# Per cell: the quick tour's training cell is the longest.
CELL_TIMEOUT = 600


def parameters_cell(notebook):
    """The one cell tagged "parameters"."""
    cells = [cell for cell in notebook.cells
             if PARAMETERS_TAG in cell.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {PARAMETERS_TAG!r}, found {len(cells)}"
    return cells[0]


def assigned_names(source):
    return {target.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


@pytest.fixture
def run_notebook(monkeypatch):
    """`run_notebook(notebook, folder, **parameters)` -> the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    # The kernel inherits the environment: no TensorFlow start-up chatter.
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")

    def run(notebook, folder, **parameters):
        """`notebook`: a file name in notebooks/, or a `nbformat` notebook."""
        if isinstance(notebook, str):
            notebook = nbformat.read(os.path.join(NOTEBOOKS, notebook), as_version=4)
        if parameters:
            cell = parameters_cell(notebook)
            unknown = set(parameters) - assigned_names(cell.source)
            assert not unknown, f"the notebook has no parameters {sorted(unknown)}"
            cell.source += "\n# Set by the test.\n" + "\n".join(
                f"{key} = {value!r}" for key, value in parameters.items())
        # The kernel must be this environment's Python, with this checkout's studio.
        # Its TensorFlow functions run eagerly, as the in-process tests' few steps
        # do: tracing the pipelines' and trainers' graphs took 50 of the DreamBooth
        # notebook's 72 s. The compiled paths are tested elsewhere
        # (test_textual_inversion_trainer.py, tests/pipelines/test_sampling_loop.py).
        notebook.cells.insert(0, nbformat.v4.new_code_cell(
            "import tensorflow as tf\n"
            "tf.config.run_functions_eagerly(True)\n"
            "import sys, studio\n"
            f"assert sys.prefix == {sys.prefix!r}, sys.prefix\n"
            f"assert studio.__file__ == {__import__('studio').__file__!r}, studio.__file__"))
        client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                                resources={"metadata": {"path": str(folder)}})
        client.execute()
        return notebook

    return run


@pytest.fixture(scope="session")
def notebook_outputs():
    """`notebook_outputs(notebook, mime_type)` -> its cells' outputs holding `mime_type`."""

    def find(notebook, mime_type):
        return [output for cell in notebook.cells if cell.cell_type == "code"
                for output in cell.get("outputs", []) if mime_type in output.get("data", {})]

    return find
