"""Training an SD-XL model is refused in one line until its trainers exist (issue #18)."""

import contextlib
import types

import pytest

from studio.errors import SettingsError


def test_a_run_on_an_sdxl_model_stops_at_loading_with_one_line():
    from studio.trainers.run_setup import load_backbone

    settings = types.SimpleNamespace(
        model="tiny-sdxl", weights=None, vocabulary=None, precision="float32"
    )
    devices = types.SimpleNamespace(scope=contextlib.nullcontext)
    with pytest.raises(SettingsError, match="not supported yet for sdxl") as error:
        load_backbone(settings, devices)
    assert "\n" not in str(error.value)
