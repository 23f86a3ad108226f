"""The README's notebook snippet (install, train, show) runs as three cells in a kernel."""

import json

import nbformat
import pytest

MARKER = "<!-- notebook-snippet -->"
# The snippet's step count, and the few the test trains with.
SHORTER = ("steps=600,", "steps=2,")


@pytest.fixture
def snippet_cells(readme_python_blocks):
    return readme_python_blocks(MARKER)


def test_the_snippet_is_three_cells_install_train_show(snippet_cells):
    install, train, show = snippet_cells  # exactly three
    assert install.startswith("# 1. Install") and "pip" in install
    assert "from studio.trainers import TextualInversionSettings, train_textual_inversion" in train
    assert train.count(SHORTER[0]) == 1
    assert show.splitlines()[-1].startswith("studio.show(")


# A kernel, TensorFlow, the model and a traced train step: a minute or more.
@pytest.mark.large
@pytest.mark.tensorflow_only
def test_the_snippet_trains_and_shows_the_new_word_inline(
    snippet_cells, run_notebook, notebook_outputs, tmp_path
):
    cells = list(snippet_cells)
    cells[1] = cells[1].replace(*SHORTER)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook = run_notebook(notebook, tmp_path)
    summary = json.loads((tmp_path / "runs" / "cross" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2
    shown = notebook.cells[-1].outputs
    assert [output for output in shown if "image/png" in output.get("data", {})]
    assert notebook_outputs(notebook, "image/png") == [
        output for output in shown if "image/png" in output.get("data", {})]
