"""Prompt templates and placeholder-token handling (installed as `studio.prompts`).

Pure Python: importing it loads neither Keras nor TensorFlow.
"""

from studio.prompts.dreambooth_prompts import (
    DREAMBOOTH_PROMPT_TEMPLATE,
    class_prompt,
    class_subject,
    indefinite_article,
    instance_prompt,
    instance_subject,
)
from studio.prompts.placeholder_token import (
    expand_placeholder,
    placeholder_token_strings,
    validate_placeholder_token,
)
from studio.prompts.prompt_templates import (
    PLACEHOLDER_MARK,
    PromptTemplates,
    fill_template,
    template_set_names,
)

__all__ = [
    "DREAMBOOTH_PROMPT_TEMPLATE",
    "PLACEHOLDER_MARK",
    "PromptTemplates",
    "class_prompt",
    "class_subject",
    "expand_placeholder",
    "fill_template",
    "indefinite_article",
    "instance_prompt",
    "instance_subject",
    "placeholder_token_strings",
    "template_set_names",
    "validate_placeholder_token",
]
