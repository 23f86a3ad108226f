"""The app's model catalog: every family's presets, and what keras-hub's need, told offline."""

import os

import pytest

from studio.app.kaggle_preset_files import kaggle_handle, local_preset_folder
from studio.app.model_catalog import model_choices

KERAS_HUB_PRESET = "stable_diffusion_3.5_medium"


@pytest.fixture
def empty_machine(tmp_path, monkeypatch):
    """No Kaggle input, an empty kagglehub cache, a Keras cache with only the CLIP vocabulary."""
    from studio.tokenizers import CLIP_VOCABULARY_FILENAME
    from studio.tokenizers.clip_vocabulary import KERAS_CACHE_SUBDIR

    monkeypatch.setenv("KAGGLE_CACHE_MOUNT_FOLDER", str(tmp_path / "kaggle-input"))
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    vocabulary = tmp_path / "keras" / KERAS_CACHE_SUBDIR / CLIP_VOCABULARY_FILENAME
    vocabulary.parent.mkdir(parents=True)
    vocabulary.write_bytes(b"")
    return tmp_path


def _choices():
    return {choice.name: choice for choice in model_choices()}


def test_every_family_is_offered_the_embedded_models_first_and_offline():
    choices = model_choices()
    assert choices[0].name == "tiny-shapes"
    by_name = {choice.name: choice for choice in choices}
    assert {by_name[name].family for name in ("tiny-shapes-xl", "tiny-sdxl", "sdxl-base")} == {
        "sdxl"}
    sd3 = by_name["tiny-shapes-sd3"]
    assert (sd3.family, sd3.available, sd3.embedded, sd3.image_size) == ("sd3", True, True, 32)
    # Its text encoders are tiny-shapes' re-expressed: the shapes world's words.
    assert (sd3.initializer_word, sd3.example_prompt) == (
        "shape", by_name["tiny-shapes"].example_prompt)
    # Flow matching samples with flow-matching Euler only.
    assert sd3.samplers == ("euler",) and "dpmpp_2m" in by_name["tiny-shapes"].samplers
    embedded = [choice.name for choice in choices if choice.embedded]
    assert embedded == [choice.name for choice in choices[: len(embedded)]]
    assert by_name["tiny-sd3"].available and by_name["tiny-sd3"].family == "sd3"


def test_a_keras_hub_preset_needs_a_download_and_says_how_to_attach_it(empty_machine):
    choice = _choices()[KERAS_HUB_PRESET]
    assert (choice.family, choice.available, choice.image_size) == ("sd3", False, 1024)
    assert kaggle_handle(KERAS_HUB_PRESET) == (
        "keras/stablediffusion-3.5/keras/stable_diffusion_3.5_medium/1")
    assert "Add Input → Models → keras/stablediffusion-3.5, framework Keras, variation " \
        "stable_diffusion_3.5_medium, version 1" in choice.how_to_get
    assert "KAGGLE_USERNAME" in choice.how_to_get and "KAGGLE_KEY" in choice.how_to_get
    assert "tokenizer" not in choice.how_to_get  # The vocabulary is here.
    medium = _choices()["stable_diffusion_3_medium"].how_to_get
    assert "Models → keras/stablediffusion3, framework Keras, variation stable_diffusion_3_medium" \
        in medium


def test_a_keras_hub_preset_attached_to_a_notebook_or_downloaded_is_offline(empty_machine):
    from kagglehub.cache import Cache
    from kagglehub.handle import parse_model_handle

    attached = empty_machine / "kaggle-input" / "stablediffusion-3.5" / "keras" / \
        "stable_diffusion_3.5_medium" / "1"
    attached.mkdir(parents=True)
    (attached / "config.json").write_text("{}")
    assert not _choices()[KERAS_HUB_PRESET].available  # No weights yet.
    (attached / "model.weights.h5").write_bytes(b"")
    choice = _choices()[KERAS_HUB_PRESET]
    assert choice.available and not choice.how_to_get
    assert local_preset_folder(KERAS_HUB_PRESET) == str(attached)

    # kagglehub's cache: files whose download completed.
    handle = parse_model_handle(kaggle_handle("stable_diffusion_3.5_large"))
    cache = Cache()
    for name in ("config.json", "model.weights.json"):
        os.makedirs(os.path.dirname(cache.get_path(handle, name)), exist_ok=True)
        open(cache.get_path(handle, name), "w").close()
    assert not _choices()["stable_diffusion_3.5_large"].available  # Not marked complete.
    for name in ("config.json", "model.weights.json"):
        cache.mark_as_complete(handle, name)
    assert _choices()["stable_diffusion_3.5_large"].available
    assert not _choices()["stable_diffusion_3.5_large_turbo"].available


def test_a_keras_hub_preset_without_the_clip_vocabulary_says_so(empty_machine, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(empty_machine / "empty-keras"))
    hint = _choices()[KERAS_HUB_PRESET].how_to_get
    assert "bpe_simple_vocab_16e6.txt.gz (tokenizer)" in hint and "Add Input" in hint


def test_without_keras_hub_the_sd3_family_says_to_install_its_extra(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "keras_hub" else find_spec(name, *args))
    choices = _choices()
    for name in ("tiny-shapes-sd3", KERAS_HUB_PRESET):
        assert not choices[name].available and "`sd3` extra" in choices[name].how_to_get
    assert choices["tiny-shapes"].available and choices["tiny-shapes-xl"].available
