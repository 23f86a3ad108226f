"""The flow-matching weighting schemes' names (SD3), for settings and the objective alike."""

# diffusers' `--weighting_scheme` values (train_dreambooth_lora_sd3.py). Two
# choose how timesteps are drawn (logit_normal, mode; weights are ones), two
# how the loss is weighted (sigma_sqrt, cosmap; timesteps uniform), and
# "none" does neither. Kept apart from `FlowMatchingObjective` so that the
# settings (and the CLI's --help) name them without importing Keras.
WEIGHTING_SCHEMES = ("sigma_sqrt", "logit_normal", "mode", "cosmap", "none")
# SD3's (and diffusers') default.
DEFAULT_WEIGHTING_SCHEME = "logit_normal"
