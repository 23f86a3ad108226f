"""Train-page inputs built from a settings dataclass's fields: one source of truth with the CLI.

The type, range, choices, help text and default of each input come from
the field (`studio.trainers.settings.setting`), as `studio train --help`'s
do: a default changed in the settings changes the form. The page only
chooses which fields it shows, in which group, and a few defaults of its
own (`APP_DEFAULTS`) where the app needs another value than the command.
"""

import dataclasses

from studio.trainers.settings.setting import default_text, help_text, value_type

# Labels where the field's name reads badly as words.
LABELS = {
    "lr": "Learning rate",
    "token": "Placeholder token",
    "init_word": "Initializer word",
    "num_vectors": "Vectors per token",
    "property": "What is it?",
    "grad_accum": "Gradient accumulation",
    "min_snr_gamma": "Min-SNR gamma",
    "lora_rank": "LoRA rank",
    "lora_alpha": "LoRA alpha",
    "lora_feed_forward": "LoRA on feed-forward layers",
    "train_text_encoder": "Train the text encoder too (LoRA)",
    "num_class_images": "Class images",
    "class_image_steps": "Sampling steps per class image",
    "class_image_guidance": "Guidance of class images",
    "prior_loss_weight": "Prior loss weight",
    "lr_decay": "Learning-rate decay",
    "remat": "Recompute activations (remat, less memory)",
    "sample_every": "Samples every (steps)",
    "sample_steps": "Sampling steps of samples",
    "sample_prompts": "Sample prompts (one per line)",
    "save_every": "Checkpoint every (steps)",
    "keep_checkpoints": "Checkpoints kept",
    "latent_variants": "Latent variants per image",
    "skip_invalid_images": "Skip unusable images",
    "norm_regularization": "Norm regularization",
    "offset_noise": "Offset noise",
    "warmup_steps": "Warm-up steps",
    "batch_size": "Batch size",
}
# Floats shown in scientific notation (tiny values).
SCIENTIFIC = ("lr",)
# The session-state key of settings put into the form by the app, widget key -> value.
CLONED_SETTINGS = "cloned_settings"
# Upper bounds of the inputs (the settings have lower bounds only).
MAX_INT = 10**7


def settings_field(settings_class, name):
    """The `dataclasses.Field` `name` of `settings_class`."""
    return {field.name: field for field in dataclasses.fields(settings_class)}[name]


def field_label(name):
    return LABELS.get(name) or name.replace("_", " ").capitalize()


def setting_input(container, settings_class, name, key, default=dataclasses.MISSING,
                  **options):
    """Draws the input of the field `name` in `container`; returns its value.

    Args:
        container: a Streamlit container (`st`, a column, a form).
        settings_class: the settings dataclass.
        name: the field.
        key: the widget's key.
        default: the value shown first, when not the field's default.
        **options: passed to the widget (`disabled`, `help`).
    """
    import streamlit as st

    field = settings_field(settings_class, name)
    value = field.default if default is dataclasses.MISSING else default
    cloned = st.session_state.get(CLONED_SETTINGS) or {}
    if key in cloned:
        # A run's settings cloned into the form (Runs page): they win over the default.
        value = cloned.pop(key)
    label = field_label(name)
    options.setdefault("help", help_text(field).capitalize() + ".")
    kind = value_type(field)
    choices = field.metadata.get("choices")
    if kind is bool:
        return container.toggle(label, value=bool(value), key=key, **options)
    if choices:
        return container.selectbox(label, list(choices), index=list(choices).index(value),
                                   key=key, **options)
    shown = default_text(field)
    placeholder = options.pop("placeholder", None if shown is None else str(shown))
    if kind is int:
        minimum = field.metadata.get("at_least")
        return container.number_input(label, min_value=minimum, max_value=MAX_INT,
                                      value=value, step=1, key=key, placeholder=placeholder,
                                      **options)
    if kind is float:
        minimum = field.metadata.get("at_least")
        number_format = "%.1e" if name in SCIENTIFIC else "%g"
        return container.number_input(label, min_value=None if minimum is None else float(minimum),
                                      value=None if value is None else float(value),
                                      format=number_format, key=key, placeholder=placeholder,
                                      step=1e-5 if name in SCIENTIFIC else 0.01, **options)
    if kind is list:
        text = container.text_area(label, value="\n".join(value or []), key=key,
                                   placeholder=placeholder, height=80, **options)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines or None
    text = container.text_input(label, value=value or "", key=key, placeholder=placeholder,
                                **options)
    return text.strip() or None
