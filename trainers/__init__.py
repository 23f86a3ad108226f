"""Training loops that teach Stable Diffusion new concepts (installed as `studio.trainers`).

The library API: a settings dataclass per method and a function that runs
it in a run folder.

Example:

>>> from studio.trainers import TextualInversionSettings, train_textual_inversion
>>> settings = TextualInversionSettings(model="tiny-shapes", data="images/",
...                                     token="<cross>", init_word="square", steps=300)
>>> summary = train_textual_inversion(settings, "runs/cross")

Importing the package is cheap: the names load on first use, so
`studio --help` never imports Keras.
"""

import importlib

# name -> module that defines it, imported on first use (PEP 562).
_EXPORTS = {
    "TrainingSettings": "studio.trainers.settings.training_settings",
    "RunSettings": "studio.trainers.settings.run_settings",
    "TextualInversionSettings": "studio.trainers.settings.textual_inversion_settings",
    "DreamBoothSettings": "studio.trainers.settings.dreambooth_settings",
    "BaseModelSettings": "studio.trainers.settings.base_model_settings",
    "SDXLShapesSettings": "studio.trainers.settings.sdxl_shapes_settings",
    "SD3ShapesSettings": "studio.trainers.settings.sd3_shapes_settings",
    "read_run_settings": "studio.trainers.settings.run_settings_files",
    "train_textual_inversion": "studio.trainers.textual_inversion.textual_inversion_training",
    "build_textual_inversion": "studio.trainers.textual_inversion.textual_inversion_training",
    "train_dreambooth": "studio.trainers.dreambooth.dreambooth_training",
    "build_dreambooth": "studio.trainers.dreambooth.dreambooth_training",
    "pretrain_base_model": "studio.trainers.base_model.base_model_pretraining",
    "ship_base_model": "studio.trainers.base_model.base_model_pretraining",
    "pretrain_sdxl_shapes_model": "studio.trainers.base_model.sdxl_shapes_pretraining",
    "ship_sdxl_shapes_model": "studio.trainers.base_model.sdxl_shapes_pretraining",
    "pretrain_sd3_shapes_model": "studio.trainers.base_model.sd3_shapes_pretraining",
    "ship_sd3_shapes_model": "studio.trainers.base_model.sd3_shapes_pretraining",
    "NonFiniteLossError": "studio.trainers.run.non_finite_loss_error",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
