"""Every page under AppTest with an empty data folder: no exception, errors as messages."""

import os

import numpy as np
import pytest

from studio.app.model_catalog import model_choices
from studio.app.safe_uploads import MAX_IMAGE_BYTES

from .conftest import PAGES, bomb_png_bytes, click, messages, new_app, page_path, png_bytes

# Commands and pages generate here; their compiled loop is tested elsewhere.
pytestmark = pytest.mark.usefixtures("eager_tensorflow")

TITLES = {"train": "Teach a concept", "runs": "Runs", "generate": "Generate",
          "compare": "Compare", "embeddings": "Embeddings"}


@pytest.fixture
def app(data_dir):
    app = new_app()
    app.run()
    return app


def test_every_page_renders_without_exception(app):
    for name in PAGES:
        app.switch_page(page_path(name)).run()
        assert not app.exception, (name, [e.value for e in app.exception])
        assert [title.value for title in app.title] == [TITLES[name]]
        assert not app.error, (name, [e.value for e in app.error])


def test_uploads_land_in_the_data_folder_under_safe_names(app, data_dir):
    app.file_uploader(key="image_uploads").set_value([
        ("../../evil.png", png_bytes(0), "image/png"),
        ("big.png", b"\0" * (MAX_IMAGE_BYTES + 1), "image/png"),
        ("notes.txt", b"not an image", "text/plain"),
        ("fake.png", b"text pretending to be a PNG", "image/png"),
        ("bomb.png", bomb_png_bytes(), "image/png"),  # issue #23, item 17
        ("good.jpg", png_bytes(1), "image/jpeg"),
        ("日本語.png", png_bytes(2), "image/png"),  # item 18
    ])
    app.run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert any("'big.png' is too large" in e and "the limit is 20 MiB" in e for e in errors)
    assert any("'notes.txt' is not an accepted file" in e for e in errors)
    assert any("'fake.png' is not an image that can be read" in e for e in errors)
    assert any("'bomb.png' declares too many pixels" in e for e in errors)
    assert not any(str(data_dir) in e for e in errors)  # item 19
    dataset = data_dir / "datasets" / "my-concept"
    assert sorted(os.listdir(dataset)) == ["evil.png", "good.jpg", "日本語.png"]
    # Nothing escaped the data folder: its parent holds only the data folder.
    assert os.listdir(data_dir.parent) == ["studio-data"]
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Usable images"] == "3"


def test_embedding_import_accepts_embeddings_only(app, data_dir, tmp_path):
    from studio.embeddings import TextualInversionEmbedding, save_embedding

    file = tmp_path / "mine.safetensors"
    save_embedding(TextualInversionEmbedding({"<mine>": np.ones((2, 32), "float32")}), str(file))
    app.switch_page(page_path("embeddings")).run()
    app.file_uploader(key="embeddings_upload").set_value(
        ("../mine.safetensors", file.read_bytes(), "application/octet-stream"))
    app.run()
    assert not messages(app), messages(app)
    assert os.listdir(data_dir / "embeddings") == ["mine.safetensors"]
    assert app.selectbox(key="embeddings_selected").options == ["mine.safetensors"]
    app.file_uploader(key="embeddings_upload").set_value(
        ("junk.pt", b"PK\x03\x04 not a real archive", "application/octet-stream"))
    app.run()
    assert not app.exception
    assert any("'junk.pt' is not an embedding file that can be read" in e.value
               for e in app.error)
    assert os.listdir(data_dir / "embeddings") == ["mine.safetensors"]

    # Issue 17, item 8: a second import is shown at once; the family follows the width; delete.
    save_embedding(TextualInversionEmbedding({"<other>": np.ones((1, 64), "float32")}),
                   str(tmp_path / "other.safetensors"))
    app.file_uploader(key="embeddings_upload").set_value(
        ("other.safetensors", (tmp_path / "other.safetensors").read_bytes(),
         "application/octet-stream"))
    app.run()
    assert app.selectbox(key="embeddings_selected").value == "other.safetensors"
    family = {metric.label: metric.value for metric in app.metric}["Model family"]
    assert "SD" not in family and "64 wide" in family
    click(app, "Delete this file")
    assert os.path.exists(data_dir / "embeddings" / "other.safetensors")
    click(app, "Yes, delete it")
    assert not app.exception
    assert os.listdir(data_dir / "embeddings") == ["mine.safetensors"]


def test_nearest_words_are_readable_words():
    from studio.app.embeddings_page import readable_word

    assert [readable_word(t) for t in ("circle</w>", "circ", "ă</w>", "3</w>", "don't</w>")] == [
        "circle", None, None, None, "don't"]


def test_generate_user_errors_are_messages(app):
    app.switch_page(page_path("generate")).run()
    app.text_area(key="generate_prompt").set_value("   ")
    next(b for b in app.button if b.label == "Generate").click().run()
    assert not app.exception
    assert [e.value for e in app.error] == ["Generating did not work: Write a prompt first."]


def test_models_that_need_a_download_say_how(app):
    app.switch_page(page_path("generate")).run()
    picker = app.selectbox(key="generate_model")
    # The embedded model first: it is the one that draws something on any machine.
    assert picker.options[0] == "tiny-shapes (✓ offline)"
    needs_download = [o for o in picker.options if "needs download" in o]
    assert needs_download  # sd-v1, sd-v2 on a machine without their files
    picker.set_value(needs_download[0]).run()
    assert any("is not on this machine yet" in w.value and "Download these files" in w.value
               for w in app.warning)
    assert next(b for b in app.button if b.label == "Generate").disabled


def _dataset(data_dir, count=3):
    folder = data_dir / "datasets" / "my-concept"
    folder.mkdir(parents=True)
    for seed in range(count):
        (folder / f"concept-{seed}.png").write_bytes(png_bytes(seed))
    return folder


def _widgets(app):
    kinds = ("number_input", "text_input", "text_area", "selectbox", "toggle")
    return {widget.key: widget for kind in kinds for widget in app.get(kind) if widget.key}


@pytest.mark.large  # ~35 s: three methods' forms, and the model's tokenizer
def test_train_form_takes_its_settings_from_the_dataclasses_and_checks_the_token(data_dir):
    """Issue 17, item 4: every setting that matters, with `studio train`'s defaults; a
    token the model already knows is refused before anything starts."""
    import dataclasses

    from studio.app.train_page import METHOD_FIELDS, field_key
    from studio.trainers.settings.setting import value_type

    _dataset(data_dir)
    app = new_app()
    app.run()
    checked = 0
    for method, (settings_class, basic, advanced) in METHOD_FIELDS.items():
        app.radio(key="train_method").set_value(method).run()
        assert not app.exception
        widgets = _widgets(app)
        fields = {field.name: field for field in dataclasses.fields(settings_class)}
        for name in basic + advanced:
            key = next((k for k in widgets if k.startswith(field_key(method, name))), None)
            if name in ("weighting_scheme", "precondition_outputs"):
                # SD3's flow-matching options: the SD 1.x model's family check refuses
                # them, so its form leaves them out (test_sd3_pages.py: SD3 shows them).
                assert key is None, (method, name)
                continue
            assert key is not None, (method, name)
            depends = {"lr", "instance_prompt", "lora_rank", "train_text_encoder", "resolution"}
            if method == "textual-inversion":
                # DreamBooth's token and init word (pivotal tuning) start empty: off.
                depends |= {"init_word", "token"}
            if name in depends:
                continue  # Defaults that depend on the model or method (`_setting`).
            field = fields[name]
            expected = field.default
            if value_type(field) is list:
                expected = "\n".join(expected or [])
            elif value_type(field) is str and expected is None:
                expected = ""
            assert widgets[key].value == expected, (method, name, widgets[key].value, expected)
            checked += 1
    assert checked > 40
    app.radio(key="train_method").set_value("dreambooth-lora").run()
    # On by default for a new identifier: UNet-only LoRA hardly learns one.
    assert app.toggle(key=field_key("dreambooth-lora", "train_text_encoder")).value is True

    app.radio(key="train_method").set_value("textual-inversion").run()
    app.text_input(key=field_key("textual-inversion", "token")).set_value("shape")
    next(button for button in app.button if button.label == "Start training").click()
    app.run()
    assert not app.exception
    assert any("must be a new word" in error.value for error in app.error)
    assert not os.listdir(data_dir / "runs")


def _finished_run(data_dir, name, steps=4):
    from studio.trainers.run.run_directory import STATUS_COMPLETED, RunDirectory
    from studio.trainers.settings.textual_inversion_settings import TextualInversionSettings

    run = RunDirectory(data_dir / "runs" / name)
    settings = TextualInversionSettings(model="tiny-shapes", data=str(data_dir / "d"),
                                        token=f"<{name}>", init_word="shape", steps=steps)
    run.create(settings.to_config())
    run.write_summary({"status": STATUS_COMPLETED, "steps": steps, "target_steps": steps,
                       "final_loss": 0.125})
    return run


def test_runs_page_renames_clones_and_deletes_a_run_after_asking(app, data_dir):
    """Issue 17, item 9."""
    _finished_run(data_dir, "first")
    app.switch_page(page_path("runs")).run()
    assert not app.exception
    tables = [frame.value for frame in app.dataframe]
    settings = next(t for t in tables if "setting" in t.columns)
    assert "Placeholder token" in list(settings["setting"])
    assert "0.125" in list(next(t for t in tables if "" in t.columns)["value"])

    app.text_input(key="rename-first").set_value("renamed run")
    click(app, "Rename")
    assert not app.exception
    assert os.listdir(data_dir / "runs") == ["renamed-run"]

    click(app, "Delete this run")
    assert os.listdir(data_dir / "runs") == ["renamed-run"]  # not before the answer
    click(app, "Keep it")
    assert os.listdir(data_dir / "runs") == ["renamed-run"]
    click(app, "Delete this run")
    click(app, "Yes, delete renamed-run")
    assert not app.exception
    assert os.listdir(data_dir / "runs") == []


def test_cloned_settings_fill_the_train_form(app, data_dir):
    from studio.app.train_page import field_key

    _finished_run(data_dir, "cloned", steps=7)
    app.switch_page(page_path("runs")).run()
    click(app, "Clone the settings into the Train form")
    app.switch_page(page_path("train")).run()  # AppTest does not follow st.switch_page
    assert not app.exception
    assert app.text_input(key=field_key("textual-inversion", "token")).value == "<cloned>"
    assert app.number_input(key=field_key("textual-inversion", "steps")).value == 7


def test_data_sets_are_kept_reused_and_edited(app, data_dir):
    """Issue 17, item 3: a library of data sets, duplicates refused, counts that add up."""
    app.selectbox(key="train_dataset").set_value("+ New data set")
    app.text_input(key="new_dataset_name").set_value("../../etc/my set é!")
    app.run()
    assert any("saved as **etc-my-set-e**" in caption.value for caption in app.caption)
    app.file_uploader(key="image_uploads").set_value([
        ("a.png", png_bytes(0), "image/png"), ("b.png", png_bytes(1), "image/png"),
        ("copy of a.png", png_bytes(0), "image/png"), ("notes.txt", b"x", "text/plain")])
    app.run()
    assert not app.exception
    folder = data_dir / "datasets" / "etc-my-set-e"
    assert sorted(os.listdir(folder)) == ["a.png", "b.png"]
    errors = [error.value for error in app.error]
    assert any("'copy of a.png' is the same picture as 'a.png'" in e for e in errors)
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics == {"Usable images": "2", "Problems": "2"}
    assert any("Only 2 usable images" in warning.value for warning in app.warning)

    # A new session (a reload) finds the set and edits it.
    again = new_app()
    again.run()
    assert again.selectbox(key="train_dataset").value == "etc-my-set-e"
    again.text_input(key="caption-etc-my-set-e-a.png").set_value("a {} on grass").run()
    assert (folder / "a.txt").read_text() == "a {} on grass\n"
    next(b for b in again.button if b.key == "remove-etc-my-set-e-b.png").click()
    again.run()
    assert sorted(os.listdir(folder)) == ["a.png", "a.txt"]
    assert {m.label: m.value for m in again.metric}["Usable images"] == "1"
    again.selectbox(key="train_dataset").set_value("+ New data set").run()
    again.text_input(key="new_dataset_name").set_value("etc my set e").run()
    assert any("exists already" in error.value for error in again.error)


@pytest.mark.large  # ~30 s: two generations with the embedded model
def test_generate_keeps_a_history_restores_settings_and_draws_random_seeds(app, data_dir):
    """Issue 17, item 5: seed -1, batches, a gallery whose images restore their settings."""
    app.switch_page(page_path("generate")).run()
    assert app.number_input(key="generate_seed").value == -1
    app.text_area(key="generate_prompt").set_value("a red circle <nowhere>")
    app.run()
    assert any("<nowhere>, which no embedding in the library has" in w.value for w in app.warning)
    app.number_input(key="generate_steps").set_value(2)
    app.slider(key="generate_count").set_value(1)
    app.number_input(key="generate_batches").set_value(2)
    click(app, "Generate")
    assert not app.exception and not app.error, [e.value for e in app.error]
    outputs = sorted(os.listdir(data_dir / "outputs"))
    assert len(outputs) == 2
    seeds = [int(name[:-4].split("-")[1]) for name in outputs]
    assert seeds[1] == seeds[0] + 1  # the second batch starts after the first's seed

    # Away and back: the form is as it was; the history restores an image's settings.
    app.switch_page(page_path("runs")).run()
    app.switch_page(page_path("generate")).run()
    assert app.text_area(key="generate_prompt").value == "a red circle <nowhere>"
    assert app.number_input(key="generate_steps").value == 2
    app.text_area(key="generate_prompt").set_value("something else").run()
    next(b for b in app.button if b.key == f"restore-{outputs[0]}").click()
    app.run()
    assert app.text_area(key="generate_prompt").value == "a red circle <nowhere>"
    assert app.number_input(key="generate_seed").value == seeds[0]


def test_png_info_reads_an_image_s_settings_back_into_the_form(app, tmp_path):
    """Issue 17, item 5: the PNG-info drop zone (a round trip through the PNG's text chunk)."""
    import numpy as np

    from studio.images import GenerationParameters, save_png

    path = tmp_path / "made.png"
    save_png(np.zeros((16, 16, 3), "uint8"), str(path), GenerationParameters(
        prompt="a blue square", negative_prompt="blurry", steps=9, sampler="Euler a",
        guidance_scale=4.5, seed=77, width=48, height=40))
    app.switch_page(page_path("generate")).run()
    app.file_uploader(key="generate_png_info").set_value(
        ("made.png", path.read_bytes(), "image/png")).run()
    assert any("a blue square" in code.value and "Seed: 77" in code.value for code in app.code)
    click(app, "Use these settings")
    assert not app.exception
    assert app.text_area(key="generate_prompt").value == "a blue square"
    assert app.text_input(key="generate_negative").value == "blurry"
    assert app.selectbox(key="generate_sampler").value == "euler_a"
    assert [app.number_input(key=f"generate_{name}").value
            for name in ("steps", "guidance", "seed", "width", "height")] == [9, 4.5, 77, 48, 40]


def test_compare_says_once_what_is_wrong_with_the_seeds(app):
    """Issue 17, item 7: bad seeds give one error, and the grid cannot be asked for."""
    app.switch_page(page_path("compare")).run()
    app.text_input(key="compare_seeds").set_value("1, two").run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        "Reading the seeds did not work: seeds are whole numbers separated by commas, such "
        "as 1, 2, 3. Received: 'two'"]
    assert next(b for b in app.button if b.label == "Make the grid").disabled


def test_xy_plot_axes_are_grid_axes_and_bad_values_are_one_error(app):
    """The page's X/Y axes are `studio grid`'s (one X/Y code), and a bad value is one message."""
    from studio.app.compare_page import XY_AXES, XY_DEFAULTS
    from studio.grids import GridAxis

    for label, values in XY_DEFAULTS.items():  # The typed axes; file axes are picked.
        assert GridAxis.from_text(XY_AXES[label], values).values
    app.switch_page(page_path("compare")).run()
    app.segmented_control(key="compare_mode").set_value("X/Y plot").run()
    app.text_input(key="compare_x_CFG").set_value("3, high").run()
    assert not app.exception
    assert len(app.error) == 1 and "cfg axis are floats" in app.error[0].value
    assert next(b for b in app.button if b.label == "Make the X/Y plot").disabled


@pytest.mark.large  # ~20 s: four images with the embedded model
def test_xy_plot_over_cfg_and_sampler(app, data_dir):
    """Issue 17, item 7: an X/Y plot over CFG × sampler, kept with its parameters."""
    from PIL import Image

    from studio.grids import GridAxis
    from studio.images import read_parameters

    app.switch_page(page_path("compare")).run()
    app.segmented_control(key="compare_mode").set_value("X/Y plot").run()
    app.text_input(key="compare_x_CFG").set_value("2, 9").run()
    app.text_input(key="compare_y_Sampler").set_value("ddim, euler").run()
    app.number_input(key="compare_steps").set_value(2).run()
    click(app, "Make the X/Y plot")
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert [b.label for b in app.get("download_button")] == ["Download the grid (PNG)"]
    grids = sorted(os.listdir(data_dir / "outputs" / "grids"))
    parameters = read_parameters(data_dir / "outputs" / "grids" / grids[-1])
    # A1111's X/Y plot fields: `studio grid --from-png` draws the plot again.
    assert parameters.extra["X Type"] == "CFG Scale" and parameters.extra["Y Type"] == "Sampler"
    assert GridAxis.from_text("cfg", parameters.extra["X Values"]).values == (2.0, 9.0)
    assert GridAxis.from_text("sampler", parameters.extra["Y Values"]).values == ("ddim", "euler")
    with Image.open(data_dir / "outputs" / "grids" / grids[-1]) as image:
        assert image.size[0] > 2 * 32 and image.size[1] > 2 * 32  # Two by two, labelled.


def _run_with_checkpoints(data_dir, name, steps=(2, 4)):
    """A finished run whose checkpoints (and result) hold `<name>` embeddings."""
    import json

    from studio.embeddings import TextualInversionEmbedding, save_embedding
    from studio.trainers.run.run_directory import EMBEDDING_FILE

    run = _finished_run(data_dir, name, steps=steps[-1])
    folders = [run.checkpoints().folder(step) for step in steps] + [run.path]
    # The width of the app's first model, which the pickers offer files for.
    width = model_choices()[0].text_encoder_width
    for step, folder in zip(steps + (None,), folders):
        os.makedirs(folder, exist_ok=True)
        save_embedding(TextualInversionEmbedding({f"<{name}>": np.ones((1, width), "float32")}),
                       os.path.join(folder, EMBEDDING_FILE))
        if step is not None:
            with open(os.path.join(folder, "checkpoint.json"), "w") as file:
                json.dump({"step": step}, file)
    return run


def test_xy_plot_offers_a_run_s_checkpoints_embeddings_and_lora_strength(app, data_dir):
    """Issue 17, item 7: Checkpoint, Embedding and LoRA strength axes."""
    _run_with_checkpoints(data_dir, "toy")
    app.switch_page(page_path("compare")).run()
    app.segmented_control(key="compare_mode").set_value("X/Y plot").run()
    make = "Make the X/Y plot"

    # The base model first: its checkpoints do not exist, so one message.
    app.selectbox(key="compare_x_axis").set_value("Checkpoint").run()
    assert not app.exception
    assert len(app.error) == 1 and "pick a run's embedding or LoRA file" in app.error[0].value
    assert next(b for b in app.button if b.label == make).disabled

    # The run's embedding first: its checkpoints by step, the final result last.
    rows = app.multiselect(key="compare_rows")
    final = next(option for option in rows.options if option.endswith("toy · final"))
    rows.set_value([final]).run()
    checkpoints = app.multiselect(key="compare_X_checkpoints_toy")
    assert checkpoints.options == ["step 2", "step 4", "final"]
    assert checkpoints.value == ["step 2", "step 4", "final"]
    assert not app.error, [e.value for e in app.error]
    assert not next(b for b in app.button if b.label == make).disabled

    # Embeddings: "none" (the plain words) and the library's final embeddings.
    app.selectbox(key="compare_y_axis").set_value("Embedding").run()
    embeddings = app.multiselect(key="compare_Y_embeddings")
    assert embeddings.options[0].startswith("none") and len(embeddings.options) == 2
    # Two axes varying the embedding cannot make one grid: one message.
    assert len(app.error) == 1 and "one axis only" in app.error[0].value

    # A LoRA strength axis needs a LoRA row.
    app.selectbox(key="compare_y_axis").set_value("LoRA strength").run()
    assert len(app.error) == 1 and "pick a LoRA file as the first row" in app.error[0].value
    assert next(b for b in app.button if b.label == make).disabled


def test_runs_page_draws_the_loss_curve_from_the_progress(app, data_dir):
    """The loss curve (a Vega-Lite spec of its own, not Altair's) has a point per step."""
    import json

    from studio.trainers.run.run_directory import progress_line

    run = _finished_run(data_dir, "curved", steps=5)
    with open(run.progress_path, "w") as file:
        for step in range(1, 6):
            file.write(progress_line(step, 1.0 / step, 1000.0 + step))
    app.switch_page(page_path("runs")).run()
    assert not app.exception
    charts = list(app.get("vega_lite_chart"))
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.spec)
    assert spec["encoding"]["y"]["title"] == "loss" and spec["encoding"]["x"]["title"] == "step"
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    points = convert_arrow_bytes_to_pandas_df(charts[0].proto.data.data)
    loss = points[points["series"] == "loss"]
    assert list(loss["x"]) == [1, 2, 3, 4, 5]
    assert list(loss["value"]) == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert len(points[points["series"] == "smoothed"]) == 5


def test_history_shows_large_images_as_small_thumbnails(tmp_path):
    import io

    from PIL import Image

    from studio.app.generate_page import THUMBNAIL_SIZE, _thumbnail

    large, small = tmp_path / "large.png", tmp_path / "small.png"
    Image.fromarray(np.zeros((512, 384, 3), "uint8")).save(large)
    Image.fromarray(np.zeros((32, 32, 3), "uint8")).save(small)
    with Image.open(io.BytesIO(_thumbnail(str(large), 1.0))) as thumbnail:
        assert thumbnail.format == "JPEG"
        assert thumbnail.size == (THUMBNAIL_SIZE * 384 // 512, THUMBNAIL_SIZE)
    assert _thumbnail(str(small), 1.0) is None  # shown as it is
