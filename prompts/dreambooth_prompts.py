"""DreamBooth prompts: "a photo of sks dog" for the subject, "a photo of a dog" for its class.

DreamBooth binds a subject to a rare identifier followed by its class noun
("sks dog"); prior preservation keeps the class itself ("a dog") as the
model knew it. Both prompts are one template, `{}` filled with the subject
text, so datasets use the same template with `instance_subject` or
`class_subject` as the placeholder. Unlike a textual-inversion placeholder,
the identifier is usually an existing rare token (`sks`), so it is not
checked against the vocabulary.
"""

import re

from studio.errors import InvalidInputError
from studio.prompts.prompt_templates import PLACEHOLDER_MARK, fill_template

DREAMBOOTH_PROMPT_TEMPLATE = "a photo of {}"
_VOWELS = "aeiou"


def indefinite_article(noun):
    """`"an"` before a vowel letter, else `"a"` (`"an apple"`, `"a dog"`).

    A spelling rule, not a pronunciation one: for nouns such as "hour" or
    "unicorn" pass a template that spells the article out.
    """
    return "an" if noun[:1].lower() in _VOWELS else "a"


def _check_class_noun(class_noun):
    if not isinstance(class_noun, str) or not class_noun.strip():
        raise InvalidInputError(
            "`class_noun` must be a non-empty string naming the subject's class, "
            f"such as 'dog'. Received: class_noun={class_noun!r}"
        )
    return " ".join(class_noun.split())


def _check_template(template):
    if not isinstance(template, str) or template.count(PLACEHOLDER_MARK) != 1:
        raise InvalidInputError(
            f"`template` must contain `{PLACEHOLDER_MARK}` exactly once. "
            f"Received: template={template!r}"
        )


def instance_subject(identifier, class_noun):
    """The subject's text, identifier then class noun: `"sks dog"`.

    Raises:
        InvalidInputError: for an empty class noun, or an identifier that is empty
            or holds whitespace.
    """
    if not isinstance(identifier, str) or not identifier or re.search(r"\s", identifier):
        raise InvalidInputError(
            "`identifier` must be one word without whitespace, such as 'sks'. "
            f"Received: identifier={identifier!r}"
        )
    return f"{identifier} {_check_class_noun(class_noun)}"


def class_subject(class_noun):
    """The class's text with its article: `"a dog"`, `"an apple"`."""
    class_noun = _check_class_noun(class_noun)
    return f"{indefinite_article(class_noun)} {class_noun}"


def instance_prompt(identifier, class_noun, template=DREAMBOOTH_PROMPT_TEMPLATE):
    """The prompt of the subject's own photos: `"a photo of sks dog"`.

    Args:
        identifier: str, one word without whitespace, e.g. `"sks"`.
        class_noun: str, e.g. `"dog"` or `"teddy bear"`.
        template: str with `{}` once, where the subject goes.

    Returns:
        The filled prompt.

    Raises:
        InvalidInputError: for a bad identifier, class noun or template.
    """
    _check_template(template)
    return fill_template(template, instance_subject(identifier, class_noun))


def class_prompt(class_noun, template=DREAMBOOTH_PROMPT_TEMPLATE):
    """The prompt of the class images for prior preservation: `"a photo of a dog"`.

    Args:
        class_noun: str, e.g. `"dog"`.
        template: str with `{}` once, where the class (with its article) goes.

    Returns:
        The filled prompt.

    Raises:
        InvalidInputError: for an empty class noun or a bad template.
    """
    _check_template(template)
    return fill_template(template, class_subject(class_noun))
