"""The SD3 family in the app: picked, generated with, trained, inspected, cloned."""

import os

import numpy as np
import pytest

from .conftest import click, messages, new_app, page_path, png_bytes

# Pages generate here; their compiled loop is tested elsewhere.
pytestmark = pytest.mark.usefixtures("eager_tensorflow")

SD3_MODEL = "tiny-shapes-sd3"


@pytest.fixture
def app(data_dir):
    app = new_app()
    app.run()
    return app


@pytest.fixture(scope="module")
def sd3_backbone():
    """The app's cached `tiny-shapes-sd3`: built once for the file (and its process)."""
    from studio.app.cached_models import load_backbone

    return load_backbone(SD3_MODEL)


def _clip_pair(backbone, word, rows=1):
    """`{clip_l, clip_g}` vectors: the rows of `word` in the model's two token tables."""
    (index,) = backbone.tokenizer.tokenize_words(word)
    return {name: np.repeat(np.asarray(table.embeddings)[index: index + 1], rows, axis=0)
            for name, table in backbone.token_embeddings.items()}


def test_generate_draws_with_the_embedded_sd3_model_and_its_embeddings(app, data_dir,
                                                                      sd3_backbone):
    from PIL import Image
    from safetensors.numpy import save_file

    # Another tool's SD3 embedding: no token inside, so the file's name is the token.
    save_file(_clip_pair(sd3_backbone, "square"),
              str(data_dir / "embeddings" / "my-square.safetensors"))
    app.switch_page(page_path("generate")).run()
    app.selectbox(key="generate_model").set_value(f"{SD3_MODEL} (✓ offline)").run()
    # Flow matching: flow-matching Euler is the one sampler.
    assert app.selectbox(key="generate_sampler").options == ["Euler"]
    assert app.text_area(key="generate_prompt").value == "a red circle on a white background"
    assert app.number_input(key="generate_width").value == 32
    picker = app.multiselect(key="generate_embeddings")
    assert picker.options == ["my-square · my-square.safetensors"]
    picker.set_value(picker.options).run()
    click(app, "my-square")  # The token picker names it as the prompt must.
    assert app.text_area(key="generate_prompt").value.endswith("background my-square")
    app.number_input(key="generate_steps").set_value(4)
    app.slider(key="generate_count").set_value(1)
    click(app, "Generate")
    assert not messages(app), messages(app)
    (infotext,) = [code.value for code in app.code]
    assert f"Model: {SD3_MODEL}" in infotext and "Sampler: Euler" in infotext
    assert "my-square" in infotext
    (image,) = os.listdir(data_dir / "outputs")
    assert Image.open(data_dir / "outputs" / image).size == (32, 32)


def _dataset(data_dir):
    folder = data_dir / "datasets" / "my-concept"
    folder.mkdir(parents=True)
    for seed in range(3):
        (folder / f"concept-{seed}.png").write_bytes(png_bytes(seed))


def test_train_offers_sd3_what_its_trainers_do_and_refuses_the_rest_in_one_line(data_dir):
    from studio.app.train_page import field_key

    _dataset(data_dir)
    app = new_app()
    app.run()
    app.radio(key="train_method").set_value("dreambooth-full").run()
    app.selectbox(key="train_model").set_value(SD3_MODEL).run()
    assert not app.exception
    method = app.radio(key="train_method")
    assert method.options == ["Textual inversion — learn a new word",
                              "DreamBooth LoRA — small adapter file"]
    assert method.value == "textual-inversion"  # Full DreamBooth is not offered...
    (why,) = [c.value for c in app.caption if "DreamBooth full is not offered" in c.value]
    assert "LoRA" in why  # ... and the settings check says why.
    app.radio(key="train_method").set_value("dreambooth-lora").run()
    keys = {widget.key for kind in ("text_input", "number_input", "toggle", "selectbox")
            for widget in app.get(kind)}
    assert field_key("dreambooth-lora", "lora_rank") in keys
    # Pivotal tuning: its token and what goes with it (SD3's check lets them through)...
    assert all(any(key.startswith(field_key("dreambooth-lora", name)) for key in keys)
               for name in ("token", "init_word", "ti_fraction"))
    # ... and its flow-matching options, but no DDPM option, which SD3's check refuses.
    for name in ("weighting_scheme", "precondition_outputs"):
        assert any(key.startswith(field_key("dreambooth-lora", name)) for key in keys), name
    assert not any(key.startswith(field_key("dreambooth-lora", "offset_noise")) for key in keys)

    # Textual inversion offers the flow-matching options too.
    app.radio(key="train_method").set_value("textual-inversion").run()
    keys = {widget.key for kind in ("text_input", "number_input", "toggle", "selectbox")
            for widget in app.get(kind)}
    for name in ("weighting_scheme", "precondition_outputs"):
        assert any(key.startswith(field_key("textual-inversion", name)) for key in keys), name

    # The settings check refuses a combination with its one line, before anything starts.
    app.number_input(key=field_key("textual-inversion", "resolution") + f"_{SD3_MODEL}") \
        .set_value(64)
    click(app, "Start training")
    assert not app.exception
    assert [e.value for e in app.error] == [
        f"Starting the run did not work: --resolution must be 32 for {SD3_MODEL} (keras-hub "
        "builds its MMDiT at the preset's image size); leave it out. Received: --resolution 64"]
    assert not os.path.exists(data_dir / "runs") or not os.listdir(data_dir / "runs")


def test_an_sd3_embedding_is_matched_to_sd3_models(app, data_dir, sd3_backbone):
    from studio.embeddings import TextualInversionEmbedding, save_embedding
    from studio.embeddings.textual_inversion_embedding import BASE_FAMILY_KEY

    backbone = sd3_backbone
    save_embedding(TextualInversionEmbedding(
        _clip_pair(backbone, "circle"), architecture="sd-xl",
        token_table_hash=backbone.token_table_hash,
        metadata={BASE_FAMILY_KEY: "sd3"}), str(data_dir / "embeddings" / "sd3.safetensors"))
    app.switch_page(page_path("embeddings")).run()
    assert not messages(app), messages(app)
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Model family"] == "SD3"
    metadata = app.dataframe[1].value
    # Its token table is tiny-shapes-sd3's, not tiny-sd3's (the other offline SD3 model).
    assert dict(zip(metadata["key"], metadata["value"]))["Matches"] == SD3_MODEL
    assert app.selectbox(key="embeddings_nearest_model").value == SD3_MODEL
    nearest = app.dataframe[2].value
    # CLIP-L's row of "circle" is nearest to "circle".
    assert nearest["#1"][0] == "circle (1.00)"


def test_an_sd3_run_is_listed_and_cloned_with_its_model(app, data_dir):
    from studio.trainers.run.run_directory import STATUS_COMPLETED, RunDirectory
    from studio.trainers.settings.dreambooth_settings import DreamBoothSettings

    run = RunDirectory(data_dir / "runs" / "sks-sd3")
    settings = DreamBoothSettings(model=SD3_MODEL, data=str(data_dir / "d"),
                                  instance_prompt="a sks shape", lora_rank=2, steps=4)
    run.create(settings.to_config())
    run.write_summary({"status": STATUS_COMPLETED, "steps": 4, "target_steps": 4})
    app.switch_page(page_path("runs")).run()
    assert not app.exception
    assert any("DreamBooth LoRA" in str(frame.value.to_dict()) for frame in app.dataframe)
    click(app, "Clone the settings into the Train form")
    app.switch_page(page_path("train")).run()
    assert not app.exception
    assert app.selectbox(key="train_model").value == SD3_MODEL
    assert app.radio(key="train_method").value == "dreambooth-lora"


def _compare_with_an_sd3_embedding(app, data_dir, backbone):
    """The Compare page on tiny-shapes-sd3 with another tool's SD3 embedding in the library."""
    from safetensors.numpy import save_file

    save_file(_clip_pair(backbone, "square"),
              str(data_dir / "embeddings" / "my-square.safetensors"))
    app.switch_page(page_path("compare")).run()
    app.selectbox(key="compare_model").set_value(f"{SD3_MODEL} (✓ offline)").run()


def test_compare_offers_an_sd3_model_its_embeddings_and_its_sampler(app, data_dir, sd3_backbone):
    _compare_with_an_sd3_embedding(app, data_dir, sd3_backbone)
    assert "embedding · my-square · my-square.safetensors" in app.multiselect(
        key="compare_rows").options
    app.segmented_control(key="compare_mode").set_value("X/Y plot").run()
    app.selectbox(key="compare_y_axis").set_value("Sampler").run()
    assert not messages(app), messages(app)
    # The X/Y plot's samplers are the model's: flow-matching Euler.
    assert app.text_input(key="compare_y_Sampler").value == "euler"
    assert any(c.value.startswith("Samplers: euler.") for c in app.caption)


@pytest.mark.large  # ~10 s (20 s in the suite): a grid with the SD3 model
def test_compare_draws_a_grid_of_an_sd3_model_and_its_embedding(app, data_dir, sd3_backbone):
    _compare_with_an_sd3_embedding(app, data_dir, sd3_backbone)
    rows = app.multiselect(key="compare_rows")
    rows.set_value([rows.options[0], "embedding · my-square · my-square.safetensors"]).run()
    app.text_input(key="compare_seeds").set_value("1")
    app.number_input(key="compare_steps").set_value(2)
    click(app, "Make the grid")
    assert not messages(app), messages(app)
    assert len(os.listdir(data_dir / "outputs" / "grids")) == 1
