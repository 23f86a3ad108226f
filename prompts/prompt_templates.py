"""Prompt templates: sentences with one `{}` where the concept's placeholder goes.

The built-in sets are plain text files next to this module
(`<name>_templates.txt`), so adding a set is adding a file; users extend them
with their own file in the same format: one template per line, `{}` marks the
placeholder, blank lines and lines starting with `#` are skipped.
"""

import os

from studio.errors import InvalidInputError

PLACEHOLDER_MARK = "{}"
COMMENT_PREFIX = "#"
TEMPLATE_FILE_SUFFIX = "_templates.txt"
_TEMPLATE_FOLDER = os.path.dirname(os.path.abspath(__file__))


def template_set_names():
    """Names of the built-in template sets, e.g. `["object", "style"]`."""
    return sorted(
        name[: -len(TEMPLATE_FILE_SUFFIX)]
        for name in os.listdir(_TEMPLATE_FOLDER)
        if name.endswith(TEMPLATE_FILE_SUFFIX)
    )


def fill_template(template, placeholder):
    """Puts `placeholder` where `{}` is in `template`.

    `str.replace` rather than `str.format`, so that templates may contain
    other braces and placeholders may contain anything.
    """
    return template.replace(PLACEHOLDER_MARK, placeholder)


def _check_template(template, where):
    if not isinstance(template, str):
        raise TypeError(
            f"A template must be a string. Received: {template!r} ({where})"
        )
    if template.count(PLACEHOLDER_MARK) != 1 or "\n" in template:
        raise InvalidInputError(
            f"A template must be one line with `{PLACEHOLDER_MARK}` exactly once, "
            f"where the placeholder goes. Received: {template!r} ({where})"
        )


class PromptTemplates:
    """An ordered, duplicate-free list of prompt templates with a name.

    Args:
        templates: sequence of strings, each with `{}` exactly once.
        name: str or None. What the set is called in messages and configs:
            a built-in set's name or the file it came from.

    Raises:
        InvalidInputError: for an empty list or a template without exactly one `{}`.

    Example:

    >>> templates = PromptTemplates.get("object") + PromptTemplates(["{} at the beach"])
    >>> templates.fill("<cat-toy>")[0]
    'a photo of a <cat-toy>'
    """

    def __init__(self, templates, name=None):
        if isinstance(templates, str):
            raise TypeError(
                "`templates` must be a sequence of strings, not one string. "
                f"Received: templates={templates!r}"
            )
        checked = []
        for index, template in enumerate(templates):
            _check_template(template, f"template {index} of {name or 'the list'}")
            if template not in checked:
                checked.append(template)
        if not checked:
            raise InvalidInputError(
                f"A template set needs at least one template. Received: an empty "
                f"set{f' ({name})' if name else ''}"
            )
        self.templates = tuple(checked)
        self.name = name

    @classmethod
    def from_name(cls, name):
        """Loads a built-in set: `"object"` or `"style"` (see `template_set_names()`)."""
        names = template_set_names()
        if name not in names:
            raise InvalidInputError(
                f"Unknown template set. Expected one of {names} or a path to a "
                f"template file. Received: {name!r}"
            )
        templates = cls.from_file(os.path.join(_TEMPLATE_FOLDER, name + TEMPLATE_FILE_SUFFIX))
        return cls(templates.templates, name=name)

    @classmethod
    def from_file(cls, path):
        """Reads a UTF-8 text file: one template per line, `{}` marks the placeholder.

        Raises:
            FileNotFoundError: if the file does not exist.
            InvalidInputError: if it is not UTF-8, has no template, or a line does
                not contain `{}` exactly once (the message gives the line).
        """
        with open(path, "rb") as file:
            data = file.read()
        try:
            # utf-8-sig: files saved by Windows Notepad start with a BOM.
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise InvalidInputError(
                f"A template file must be UTF-8 text. Received: {path} with byte "
                f"0x{data[error.start]:02x} at offset {error.start}"
            ) from None
        templates = []
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith(COMMENT_PREFIX):
                continue
            _check_template(line, f"line {number} of {path}")
            templates.append(line)
        return cls(templates, name=os.fspath(path))

    @classmethod
    def get(cls, spec):
        """A template set from a name, a file path, a list of templates or a set.

        Args:
            spec: `"object"`, `"style"` (built-in sets), a path to a template
                file, a sequence of template strings, or a `PromptTemplates`.

        Returns:
            A `PromptTemplates`.
        """
        if isinstance(spec, PromptTemplates):
            return spec
        if isinstance(spec, (str, os.PathLike)):
            if isinstance(spec, str) and spec in template_set_names():
                return cls.from_name(spec)
            if os.path.isfile(spec):
                return cls.from_file(spec)
            raise InvalidInputError(
                f"Expected a template set name ({template_set_names()}) or the path "
                f"of a template file. Received: {os.fspath(spec)!r}, which is neither"
            )
        return cls(spec)

    def fill(self, placeholder):
        """Every template with `placeholder` in place of `{}`, in order."""
        if not isinstance(placeholder, str) or not placeholder:
            raise InvalidInputError(
                f"`placeholder` must be a non-empty string. Received: {placeholder!r}"
            )
        return [fill_template(template, placeholder) for template in self.templates]

    def __add__(self, other):
        other = PromptTemplates.get(other)
        name = " + ".join(n for n in (self.name, other.name) if n) or None
        return PromptTemplates(self.templates + other.templates, name=name)

    def __len__(self):
        return len(self.templates)

    def __iter__(self):
        return iter(self.templates)

    def __getitem__(self, index):
        return self.templates[index]

    def __eq__(self, other):
        return isinstance(other, PromptTemplates) and self.templates == other.templates

    def __hash__(self):
        return hash(self.templates)

    def __repr__(self):
        return f"PromptTemplates({len(self)} templates, name={self.name!r})"

    def get_config(self):
        return {"templates": list(self.templates), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
