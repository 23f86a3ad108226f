"""What a model family's trainers refuse, asked of their own settings checks (the CLI's).

The Train page offers a method, and shows a setting, only where the check
of the model's family lets it through, and on Start the same check refuses
a combination with its one line: the app never keeps its own list of what
a family cannot do. SD3's checks are `check_sd3_settings` of its
textual-inversion and DreamBooth runs; SD 1.x / 2.x and SD-XL runs of
either method refuse SD3's flow-matching options
(`RunSettings.check_ddpm_options`).
"""

import dataclasses

from studio.errors import SettingsError
from studio.models.presets import SD3
from studio.trainers.settings.setting import value_type
from studio.trainers.settings.textual_inversion_settings import TextualInversionSettings

# A value that sets an option, by the field's type: the checks refuse an
# option that is set at all.
_SET_VALUES = {bool: True, int: 1, float: 1.0, str: "x", list: ["x"]}


def check_family_settings(family, settings, backbone=None):
    """Raises the check's `SettingsError` when `family`'s trainer does not do `settings`.

    Args:
        family: the model's family (`ModelChoice.family`).
        settings: a `TextualInversionSettings` or `DreamBoothSettings`.
        backbone: the loaded model, for what a check tells only from it
            (SD3 textual inversion: its resolution); None skips that.

    Raises:
        SettingsError: the check's one line (the option and the way out).
    """
    if family != SD3:
        settings.check_ddpm_options()
        return
    if isinstance(settings, TextualInversionSettings):
        from studio.trainers.textual_inversion.sd3_textual_inversion_training import (
            check_sd3_settings,
        )

        check_sd3_settings(settings, backbone)
    else:
        from studio.trainers.dreambooth.sd3_dreambooth_training import check_sd3_settings

        check_sd3_settings(settings)


def refusal(family, settings):
    """The one line with which `family`'s check refuses `settings` (before loading the
    model), or None when it lets them through."""
    try:
        check_family_settings(family, settings)
    except SettingsError as error:
        return str(error)
    return None


def refuses_setting(family, settings, name):
    """True when `family`'s check refuses `settings` with the option `name` set.

    Example:

    ```python
    refuses_setting("sd3", DreamBoothSettings(model="tiny-sd3", lora_rank=4), "offset_noise")
    # True: offset noise is a DDPM option, which SD3's flow matching refuses.
    ```
    """
    field = next(f for f in dataclasses.fields(settings) if f.name == name)
    value = _SET_VALUES[value_type(field)]
    return refusal(family, dataclasses.replace(settings, **{name: value})) is not None
