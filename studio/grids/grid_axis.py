"""One axis of an X/Y/Z plot: which setting it varies, and its values."""

import csv
import dataclasses
import io
import os

from studio.errors import InvalidInputError

# kind -> (AUTOMATIC1111's axis label, the type of its values). A1111 has the
# first six; the others are the studio's, for the concept files it trains.
AXIS_KINDS = {
    "seed": ("Seed", int),
    "steps": ("Steps", int),
    "cfg": ("CFG Scale", float),
    "sampler": ("Sampler", str),
    "prompt_sr": ("Prompt S/R", str),
    "model": ("Checkpoint name", str),
    "prompt": ("Prompt", str),
    "lora_strength": ("LoRA strength", float),
    "lora": ("LoRA", str),
    "embedding": ("Embedding", str),
}
# A value of a `lora` or `embedding` axis meaning "no file": the base model.
NO_FILE = "none"
# Kinds applied first, so that a `lora_strength` axis reaches an axis's LoRA.
_FILE_KINDS = ("model", "lora", "embedding")


@dataclasses.dataclass(frozen=True)
class GridAxis:
    """The values one axis of a grid gives a setting.

    Args:
        kind: one of `AXIS_KINDS`: "seed", "steps", "cfg", "sampler",
            "prompt_sr" (A1111's Prompt S/R: the first value is searched in
            the prompt and negative prompt, each value replaces it), "model"
            (a `--model` source), "prompt", "lora_strength" (every LoRA's
            strength), "lora" or "embedding" (a file added to the settings'
            own, or "none").
        values: the values, as their kind's type or as text.

    Raises:
        InvalidInputError: an unknown kind, no values, or a value that is not
            of its kind's type.
    """

    kind: str
    values: tuple

    def __post_init__(self):
        if self.kind not in AXIS_KINDS:
            raise InvalidInputError(
                f"A grid axis must be one of {list(AXIS_KINDS)}. Received: {self.kind!r}"
            )
        value_type = AXIS_KINDS[self.kind][1]
        values = []
        for value in self.values:
            try:
                values.append(value_type(value.strip() if isinstance(value, str) else value))
            except ValueError:
                raise InvalidInputError(
                    f"The values of a {self.kind} axis are {value_type.__name__}s. "
                    f"Received: {value!r}"
                ) from None
        if not values:
            raise InvalidInputError(f"A {self.kind} axis needs at least one value. Received: none")
        object.__setattr__(self, "values", tuple(values))

    @classmethod
    def from_text(cls, kind, text):
        """An axis from comma-separated values (a value with commas in "double quotes")."""
        return cls(kind, [value for value in split_values(text) if value.strip()])

    @classmethod
    def from_a1111(cls, label, text):
        """An axis from A1111's infotext fields (`X Type: Seed, X Values: "1, 2"`)."""
        for kind, (a1111_label, _) in AXIS_KINDS.items():
            if label.lower() == a1111_label.lower():
                return cls.from_text(kind, text)
        raise InvalidInputError(
            f"The grid's axis {label!r} is not one the studio can vary: it varies "
            f"{', '.join(entry[0] for entry in AXIS_KINDS.values())}."
        )

    @property
    def label(self):
        """A1111's name of the axis ("Seed", "CFG Scale", ...)."""
        return AXIS_KINDS[self.kind][0]

    @property
    def is_file_kind(self):
        return self.kind in _FILE_KINDS

    def values_text(self):
        """The values as comma-separated text, as `from_text` reads them."""
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow([_format(v) for v in self.values])
        return buffer.getvalue()

    def value_labels(self):
        """What the sheet writes beside each value: "Seed: 3", a prompt, a file's name."""
        if self.kind in ("lora", "embedding", "model"):
            return _file_labels(self.values)
        if self.kind in ("prompt", "prompt_sr"):
            return [str(value) for value in self.values]
        return [f"{self.label}: {_format(value)}" for value in self.values]

    def files(self):
        """The files of a `lora` or `embedding` axis (without "none")."""
        if self.kind not in ("lora", "embedding"):
            return []
        return [value for value in self.values if value.lower() != NO_FILE]

    def apply(self, settings, index, lora_strength=1.0):
        """`settings` with value `index` of this axis.

        Args:
            settings: a `GenerationSettings`.
            index: which value.
            lora_strength: the strength a `lora` axis's file is applied at.

        Returns:
            A new `GenerationSettings`.
        """
        value = self.values[index]
        change = {
            "seed": lambda: {"seed": value},
            "steps": lambda: {"steps": value},
            "cfg": lambda: {"guidance_scale": value},
            "sampler": lambda: {"sampler": value},
            "model": lambda: {"model": value},
            "prompt": lambda: {"prompt": value},
            "prompt_sr": lambda: self._replaced(settings, value),
            "lora_strength": lambda: {
                "loras": tuple((path, value) for path, _ in settings.loras)},
            "lora": lambda: {"loras": settings.loras + (
                () if value.lower() == NO_FILE else ((value, lora_strength),))},
            "embedding": lambda: {"embeddings": settings.embeddings + (
                () if value.lower() == NO_FILE else (value,))},
        }[self.kind]()
        return dataclasses.replace(settings, **change)

    def _replaced(self, settings, value):
        search = self.values[0]
        prompt = settings.prompt
        if search not in prompt and search not in settings.negative_prompt:
            raise InvalidInputError(
                f"Prompt S/R's first value is the text each value replaces, so the prompt "
                f"must contain it. Received: {search!r} in prompt {prompt!r}"
            )
        return {"prompt": prompt.replace(search, value),
                "negative_prompt": settings.negative_prompt.replace(search, value)}


def split_values(text):
    """Comma-separated values as a list; a value with commas is written in double quotes."""
    return next(csv.reader(io.StringIO(str(text)), skipinitialspace=True), [])


def _format(value):
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _file_labels(values):
    """Each file's name; where names repeat (a run's checkpoints), with its folder's."""
    stems = [os.path.splitext(os.path.basename(str(value)))[0] for value in values]
    labels = []
    for value, stem in zip(values, stems):
        if stems.count(stem) > 1:
            parent = os.path.basename(os.path.dirname(os.path.abspath(str(value))))
            stem = f"{parent}/{stem}"
        labels.append(stem)
    return labels
