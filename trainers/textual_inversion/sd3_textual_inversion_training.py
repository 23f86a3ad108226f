"""Textual inversion on an SD3 model: what `build_textual_inversion` checks for the `sd3` family.

The run is every textual-inversion run's (images, latent cache, prompt
templates, checkpoints, samples); the trainer is `SD3TextualInversionTrainer`
(CLIP-L and CLIP-G rows, flow matching).
"""

from studio.errors import SettingsError

# Textual-inversion options an SD3 run does not have, with why.
_UNSUPPORTED = (
    ("min_snr_gamma", "--min-snr-gamma", "flow matching weights timesteps its own way"),
    ("offset_noise", "--offset-noise", "a DDPM option"),
)


def check_sd3_settings(settings, backbone=None):
    """Refuses what SD3 textual inversion does not do, before (and, with `backbone`, after) loading.

    Raises:
        SettingsError: a DDPM-only option, or a `--resolution` other than
            the model's (keras-hub builds its MMDiT at one latent size).
    """
    for field, option, reason in _UNSUPPORTED:
        if getattr(settings, field):
            raise SettingsError(
                f"{option} is not supported for SD3 models ({reason}); leave it out. "
                f"Received: --model {settings.model} with {option}"
            )
    if backbone is not None and settings.resolution not in (None, backbone.image_size):
        raise SettingsError(
            f"--resolution must be {backbone.image_size} for {settings.model} (keras-hub builds "
            "its MMDiT at the preset's image size); leave it out. "
            f"Received: --resolution {settings.resolution}"
        )
