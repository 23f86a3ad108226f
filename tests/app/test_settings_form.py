"""The Train form's inputs come from the settings dataclasses (one source of truth with the CLI)."""

import dataclasses

import pytest

from studio.app.settings_form import setting_input
from studio.app.train_page import METHOD_FIELDS
from studio.trainers.settings.setting import help_text


class RecordingContainer:
    """Stands for a Streamlit container: records each widget call, returns its value."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, kind):
        def widget(label, *args, **options):
            self.calls.append((kind, label, args, options))
            if kind == "selectbox":
                return args[0][options["index"]]
            if kind == "text_area":
                return options["value"]
            return options.get("value")

        return widget


@pytest.mark.parametrize("method", list(METHOD_FIELDS))
def test_each_input_has_its_field_s_default_help_and_range(method):
    settings_class, basic, advanced = METHOD_FIELDS[method]
    fields = {field.name: field for field in dataclasses.fields(settings_class)}
    for name in basic + advanced:
        container = RecordingContainer()
        value = setting_input(container, settings_class, name, key=name)
        (kind, label, args, options), = container.calls
        field = fields[name]
        assert options["help"].lower().startswith(help_text(field)[:20].lower()), name
        if field.metadata.get("choices"):
            assert kind == "selectbox" and args[0] == list(field.metadata["choices"])
        elif kind == "number_input":
            assert options["min_value"] == field.metadata.get("at_least"), name
        if kind == "text_area":
            assert value == (field.default or None)
        else:
            assert value == field.default, (name, value, field.default)


def test_every_setting_that_matters_is_in_the_form():
    """Fields left out are where the app decides (files, logging, devices) or the CLI's only."""
    app_decides = {"model", "data", "cache_dir", "log_every", "weights", "vocabulary",
                   "devices", "class_data", "jit"}
    for method, (settings_class, basic, advanced) in METHOD_FIELDS.items():
        shown = set(basic + advanced)
        missing = {field.name for field in dataclasses.fields(settings_class)} - shown
        if method == "dreambooth-full":
            # Pivotal tuning (token, init_word, ti_fraction) trains a LoRA with the token.
            # SD3's flow-matching options: SD3 has no full DreamBooth.
            app_decides_here = app_decides | {"lora_rank", "lora_alpha", "lora_feed_forward",
                                              "token", "init_word", "ti_fraction",
                                              "weighting_scheme", "precondition_outputs"}
        elif method == "dreambooth-lora":
            app_decides_here = app_decides | {"remat"}  # LoRA keeps few weights
        else:
            app_decides_here = app_decides
        assert missing <= app_decides_here, (method, missing - app_decides_here)
