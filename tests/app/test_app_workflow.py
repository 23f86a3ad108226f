"""The studio end to end under AppTest, with the app's first model (the embedded tiny-shapes) on a CPU.

One training run serves the session (`workflow`, in conftest.py): an app
process starts it and is killed (the run goes on), a restarted app follows
it, stops it with the Stop button (final checkpoint), resumes it on the
Runs page and sees it finish; then the run's embedding is used to
generate, compare, inspect and convert.
"""

import os

import pytest

from studio.app import run_status
from studio.app.model_catalog import model_choices
from studio.models.presets import BACKBONE_PRESETS

from .conftest import TRAINING_STEPS, click, messages, new_app, page_path

# The pages generate in this process; their compiled loop is tested elsewhere.
# `large`: the session's training run (an app process, a kill, a restart, a
# stop and a resume) takes 60-80 s on 2 cores; the `large` step builds it
# anyway for the browser tests (test_browser.py, the same xdist group), so
# there these tests add only their own 30-40 s.
pytestmark = [pytest.mark.usefixtures("eager_tensorflow"), pytest.mark.large]


def test_killing_the_app_leaves_the_run_training(workflow):
    assert workflow["training_alive_after_kill"]
    assert workflow["status_after_kill"] in (run_status.STARTING, run_status.RUNNING)
    assert any(workflow["record"].name in text for text in workflow["restarted_markdown"])
    assert workflow["restarted_stop_buttons"] == ["Stop"]


def test_stop_button_stops_with_a_final_checkpoint(workflow):
    assert workflow["stop_file_after_click"]
    assert workflow["stopped_status"].state == run_status.STOPPED
    summary = workflow["stopped_summary"]
    assert summary["status"] == "stopped: by request"
    assert 1 <= summary["steps"] < TRAINING_STEPS
    assert workflow["stopped_checkpoints"][-1] == summary["steps"]


def test_resumed_run_shows_progress_and_finishes(workflow):
    record = workflow["record"]
    assert workflow["final_status"].state == run_status.FINISHED
    assert record.summary["steps"] == TRAINING_STEPS
    assert [step for step, _, _ in record.progress()] == list(range(1, TRAINING_STEPS + 1))
    assert any(0 < value <= 100 for value in workflow["progress_seen"])
    assert any("badge[" in text and "Finished" in text for text in workflow["final_markdown"])
    assert not [m for m in workflow["final_problems"] if m[0] != "warning"]
    assert os.path.isfile(os.path.join(record.path, "embedding.safetensors"))
    assert record.samples()


@pytest.fixture
def app(workflow, monkeypatch):
    monkeypatch.setenv("STUDIO_APP_DATA", str(workflow["data"]))
    app = new_app()
    app.run()
    return app


def test_runs_page_shows_curves_settings_and_tensorboard_command(app, workflow):
    app.switch_page(page_path("runs")).run()
    assert not app.exception
    assert workflow["record"].name in app.selectbox(key="runs_selected_name").options
    assert any("tensorboard --logdir" in code.value for code in app.code)
    assert any("loss" in markdown.value for markdown in app.markdown)  # A TensorBoard curve.


def test_generate_with_the_trained_embedding(app, workflow):
    app.switch_page(page_path("generate")).run()
    picker = app.multiselect(key="generate_embeddings")
    final = next(option for option in picker.options if option.endswith("· final"))
    picker.set_value([final]).run()
    click(app, "<app-toy>")  # The token picker inserts the token.
    assert app.text_area(key="generate_prompt").value.endswith("<app-toy>")
    app.number_input(key="generate_steps").set_value(3)
    app.slider(key="generate_count").set_value(2)
    outputs_folder = os.path.join(workflow["data"], "outputs")
    before = set(os.listdir(outputs_folder)) if os.path.isdir(outputs_folder) else set()
    click(app, "Generate")
    assert not messages(app), messages(app)
    downloads = [element for element in app.get("download_button")]
    assert len(downloads) == 2
    assert any("<app-toy>" in code.value and "Steps: 3" in code.value for code in app.code)
    # The browser test may have generated into the same (session-wide) data folder.
    new = set(os.listdir(outputs_folder)) - before
    assert len([name for name in new if name.endswith(".png")]) == 2


def test_compare_grid_of_base_and_checkpoints(app, workflow):
    app.switch_page(page_path("compare")).run()
    rows = app.multiselect(key="compare_rows")
    checkpoint = next(option for option in rows.options if "step" in option.rsplit("·", 1)[-1])
    rows.set_value(["base, before training", checkpoint]
                   + [option for option in rows.options if option.endswith("· final")]).run()
    app.text_input(key="compare_seeds").set_value("5, 6").run()
    app.number_input(key="compare_steps").set_value(2).run()
    click(app, "Make the grid")
    assert not messages(app), messages(app)
    assert [b.label for b in app.get("download_button")] == ["Download the grid (PNG)"]
    # On the shapes-world model the classifier scores each row.
    assert any(markdown.value == "**Scores**" for markdown in app.markdown)
    table = app.dataframe[-1].value
    assert len(table.index) == 3  # base, the step-2 checkpoint, the final embedding
    assert "reads as" in table.columns  # "a photo of a shape" names no attribute to check
    assert all(value.endswith("/2)") for value in table["reads as"])  # two seeds per row


def test_inspect_and_convert_the_embedding(app, workflow):
    app.switch_page(page_path("embeddings")).run()
    picker = app.selectbox(key="embeddings_selected")
    picker.set_value(next(o for o in picker.options if o.endswith("· final"))).run()
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Format"] == "native"
    first = model_choices()[0]
    width = BACKBONE_PRESETS[first.name]["text_encoder"]["config"]["hidden_dim"]
    assert metrics["Width"] == str(width)
    # The run starts from the model's suggested word, still the nearest after 4 steps.
    assert any(first.initializer_word in str(frame.value) for frame in app.dataframe)
    app.selectbox(key="export_format").set_value("a1111")
    next(b for b in app.button if b.label == "Convert").click().run()
    assert not messages(app), messages(app)
    exported = os.path.join(workflow["data"], "exports", "app-toy.pt")
    assert os.path.isfile(exported)
    from studio.embeddings import load_embedding

    assert load_embedding(exported).format == "a1111"
