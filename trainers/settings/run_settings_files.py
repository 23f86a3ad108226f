"""The settings of a run folder: which method wrote it, and its settings object."""

from studio.errors import SettingsError
from studio.trainers.settings.base_model_settings import BaseModelSettings
from studio.trainers.settings.dreambooth_settings import DreamBoothSettings
from studio.trainers.settings.sd3_shapes_settings import SD3ShapesSettings
from studio.trainers.settings.sdxl_shapes_settings import SDXLShapesSettings
from studio.trainers.settings.textual_inversion_settings import TextualInversionSettings

SETTINGS_CLASSES = {
    cls.METHOD: cls for cls in (
        TextualInversionSettings, DreamBoothSettings, BaseModelSettings, SDXLShapesSettings,
        SD3ShapesSettings,
    )
}


def settings_class(config):
    """The settings class of a run's `config.json` dict.

    `config.json` files written before it recorded the method are told
    apart by their keys.

    Raises:
        SettingsError: a method this studio does not know.
    """
    method = config.get("method")
    if method is None:
        if "instance_prompt" in config:
            method = DreamBoothSettings.METHOD
        elif "token" in config:
            method = TextualInversionSettings.METHOD
        elif "vae_steps" in config:
            method = BaseModelSettings.METHOD
    if method not in SETTINGS_CLASSES:
        raise SettingsError(
            f"A run's `method` must be one of {', '.join(SETTINGS_CLASSES)}. Received: {method!r}"
        )
    return SETTINGS_CLASSES[method]


def read_run_settings(out, **overrides):
    """The settings of the run in the folder `out`, with `overrides` on top.

    Raises:
        FileNotFoundError: `out` holds no training run.
    """
    from studio.trainers.run.run_directory import RunDirectory

    config = RunDirectory(out).read_config()
    return settings_class(config).from_config(config, **overrides)
