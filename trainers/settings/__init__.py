"""Typed run settings: one dataclass per training method, on a shared base.

Each field's metadata carries its help text, its checks and whether a
resumed run may change it; the CLI builds its options from the fields.
"""

from studio.trainers.settings.base_model_settings import BaseModelSettings
from studio.trainers.settings.dreambooth_settings import DreamBoothSettings
from studio.trainers.settings.precision import PRECISIONS, frozen_network_policy
from studio.trainers.settings.run_settings import RunSettings
from studio.trainers.settings.run_settings_files import read_run_settings, settings_class
from studio.trainers.settings.sd3_shapes_settings import SD3ShapesSettings
from studio.trainers.settings.sdxl_shapes_settings import SDXLShapesSettings
from studio.trainers.settings.setting import option_name, setting
from studio.trainers.settings.textual_inversion_settings import TextualInversionSettings
from studio.trainers.settings.training_settings import TrainingSettings
