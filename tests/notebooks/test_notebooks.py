"""Every notebook runs top to bottom on the CPU (small settings) without a cell raising."""

import json
import os

import pytest

import nbformat

NOTEBOOKS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "notebooks")

pytestmark = pytest.mark.tensorflow_only


def read_notebook(name):
    return nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)

PNG = "image/png"
WIDGET = "application/vnd.jupyter.widget-view+json"
# The GPU notebooks on the embedded model: a few steps of tiny images.
TINY = dict(model="tiny-shapes", precision="float32", devices=1, steps=2, sample_steps=2,
            tensorboard=False)


def test_every_notebook_is_stored_without_outputs_and_has_a_parameters_cell():
    names = sorted(name for name in os.listdir(NOTEBOOKS) if name.endswith(".ipynb"))
    assert names == ["dreambooth_lora.ipynb", "quick_tour.ipynb", "textual_inversion.ipynb"]
    for name in names:
        notebook = read_notebook(name)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert all(not cell.outputs and cell.execution_count is None for cell in code), name
        tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        first, last = notebook.cells[0], notebook.cells[-1]
        assert first.cell_type == "markdown" and "**Needs:**" in first.source, name
        assert last.cell_type == "markdown" and "AUTOMATIC1111" in last.source, name
        assert "ComfyUI" in last.source, name


def test_quick_tour_shows_before_and_after_inline_and_exports_the_embedding(
    run_notebook, notebook_outputs, tmp_path
):
    notebook = run_notebook("quick_tour.ipynb", tmp_path, steps=2, sample_steps=2)
    # The concept, the before images, the before/after grid.
    assert len(notebook_outputs(notebook, PNG)) == 3
    assert notebook_outputs(notebook, WIDGET), "no notebook progress bar"
    out = tmp_path / "quick-tour"
    assert json.loads((out / "run" / "summary.json").read_text())["steps"] == 2
    assert (out / "before_after.png").is_file()
    for path in ("a1111/cross.pt", "diffusers/learned_embeds.safetensors",
                 "kohya/cross.safetensors"):
        assert (out / "export" / path).is_file(), path


@pytest.fixture
def photos(tmp_path):
    """Five images for the GPU notebooks' data (the quick tour's cross, with captions)."""
    from studio.evaluation import render_concept_set

    render_concept_set(tmp_path / "photos")
    return str(tmp_path / "photos")


# Each starts a kernel, imports TensorFlow, loads and traces the model (about
# a minute on 2 cores): in the default run all the same, as every notebook is.
def test_textual_inversion_notebook_runs_on_the_embedded_model(run_notebook, notebook_outputs, tmp_path, photos):
    notebook = run_notebook(
        "textual_inversion.ipynb", tmp_path, **TINY, data=photos, token="<blob>",
        init_word="square", num_vectors=1, prompts=["a {}"], out="runs/blob")
    assert len(notebook_outputs(notebook, PNG)) == 2  # before; before/after
    run = tmp_path / "runs" / "blob"
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert (run / "blob.pt").is_file() and (run / "before_after.png").is_file()


def test_dreambooth_notebook_runs_on_the_embedded_model(run_notebook, notebook_outputs, tmp_path, photos):
    notebook = run_notebook(
        "dreambooth_lora.ipynb", tmp_path, **TINY, data=photos,
        instance_prompt="a photo of sks square", class_prompt="a photo of a square",
        num_class_images=2, class_image_steps=2, lora_rank=2,
        prompts=["a photo of sks square"], out="runs/sks")
    assert len(notebook_outputs(notebook, PNG)) == 2
    run = tmp_path / "runs" / "sks"
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert (run / "lora.safetensors").is_file() and (run / "before_after.png").is_file()
    assert len(os.listdir(run / "class_images")) >= 2
