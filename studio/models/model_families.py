"""Model families: which backbone class builds a preset or a saved folder."""

import json
import os

from studio.errors import InvalidInputError
from studio.models.presets import BACKBONE_PRESETS, SD3, SD3_PRESETS, SDXL, STABLE_DIFFUSION
from studio.models.sd3 import SD3Backbone
from studio.models.sdxl.sdxl_backbone import SDXLBackbone
from studio.models.stable_diffusion_backbone import PRESET_CONFIG_FILE, StableDiffusionBackbone

# Backbone class by family (a preset's and a saved folder's "family"). A new
# family (SDXL, SD3) adds its `DiffusionBackbone` subclass here.
FAMILIES = {STABLE_DIFFUSION: StableDiffusionBackbone, SDXL: SDXLBackbone, SD3: SD3Backbone}


def backbone_class(family):
    """The `DiffusionBackbone` subclass of a model family.

    Raises:
        ValueError: for a family the studio does not have.
    """
    if family not in FAMILIES:
        raise InvalidInputError(
            f"Unknown model family. Expected one of {sorted(FAMILIES)}. "
            f"Received: family={family!r}"
        )
    return FAMILIES[family]


def family_of(preset):
    """The family of a preset name or saved folder.

    Folders saved before families existed, and anything `from_preset` will
    reject with its own message, count as Stable Diffusion.
    """
    if preset in BACKBONE_PRESETS:
        return BACKBONE_PRESETS[preset]["family"]
    if preset in SD3_PRESETS:
        return SD3_PRESETS[preset]["family"]
    config_path = os.path.join(str(preset), PRESET_CONFIG_FILE)
    if os.path.isfile(config_path):
        with open(config_path) as file:
            return json.load(file).get("family", STABLE_DIFFUSION)
    return STABLE_DIFFUSION
