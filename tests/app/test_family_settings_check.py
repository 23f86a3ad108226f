"""The Train page asks the trainers' own checks what a model family refuses."""

import pytest

from studio.app.family_settings_check import check_family_settings, refusal, refuses_setting
from studio.errors import SettingsError
from studio.trainers.settings.dreambooth_settings import DreamBoothSettings
from studio.trainers.settings.textual_inversion_settings import TextualInversionSettings

SD3_MODEL = "tiny-shapes-sd3"


def test_sd3_trains_lora_and_textual_inversion_and_refuses_full_dreambooth_in_one_line():
    assert refusal("sd3", DreamBoothSettings(model=SD3_MODEL, lora_rank=4)) is None
    assert refusal("sd3", TextualInversionSettings(model=SD3_MODEL)) is None
    message = refusal("sd3", DreamBoothSettings(model=SD3_MODEL))
    assert "LoRA" in message and "\n" not in message
    for family in ("stable_diffusion", "sdxl"):
        assert refusal(family, DreamBoothSettings(model="tiny")) is None


def test_options_a_family_refuses_are_told_by_its_check():
    lora = DreamBoothSettings(model=SD3_MODEL, lora_rank=4)
    assert refuses_setting("sd3", lora, "offset_noise")  # A DDPM option.
    assert not refuses_setting("sd3", lora, "token")  # Pivotal tuning (SD3PivotalTuningTrainer).
    assert refuses_setting("sd3", TextualInversionSettings(model=SD3_MODEL), "min_snr_gamma")
    assert not refuses_setting("sd3", lora, "lora_feed_forward")
    assert not refuses_setting("sd3", lora, "class_prompt")
    assert not refuses_setting("sdxl", DreamBoothSettings(model="tiny-sdxl", lora_rank=4),
                               "token")
    # SD3's flow-matching options: offered for SD3, refused by the DDPM families' check.
    # Both methods' runs: textual inversion's as DreamBooth's.
    for name in ("weighting_scheme", "precondition_outputs"):
        assert not refuses_setting("sd3", lora, name)
        assert not refuses_setting("sd3", TextualInversionSettings(model=SD3_MODEL), name)
        for family, model in (("stable_diffusion", "tiny"), ("sdxl", "tiny-sdxl")):
            assert refuses_setting(family, DreamBoothSettings(model=model, lora_rank=4), name)
            assert refuses_setting(family, TextualInversionSettings(model=model), name)


def test_sd3_textual_inversion_checks_the_resolution_once_the_model_is_loaded():
    class Loaded:
        image_size = 32

    settings = TextualInversionSettings(model=SD3_MODEL, resolution=64)
    check_family_settings("sd3", settings)  # Before loading nothing tells.
    with pytest.raises(SettingsError, match="--resolution must be 32"):
        check_family_settings("sd3", settings, Loaded())


def test_what_the_check_stops_refusing_the_app_offers(monkeypatch):
    """The app keeps no list of its own: an option SD3's check lets through is offered."""
    from studio.trainers.dreambooth import sd3_dreambooth_training

    lora = DreamBoothSettings(model=SD3_MODEL, lora_rank=4)
    monkeypatch.setattr(sd3_dreambooth_training, "_UNSUPPORTED", ())
    assert not refuses_setting("sd3", lora, "offset_noise")
    assert not refuses_setting("sd3", lora, "min_snr_gamma")
