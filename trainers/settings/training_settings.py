"""`TrainingSettings`: what every method's settings dataclass can do."""

import dataclasses
from typing import ClassVar

from studio.errors import SettingsError
from studio.trainers.settings.setting import option_name

# The key of `config.json` that lists what each resume changed.
HISTORY_KEY = "history"


@dataclasses.dataclass(kw_only=True)
class TrainingSettings:
    """The base of the settings dataclasses: checks, `config.json`, resume.

    Subclasses declare their fields with `setting(...)`; the metadata says
    which are required, their ranges, and which a resumed run may change.

    Class attributes:
        METHOD: the method's name in `config.json` ("textual_inversion").
        COMMAND: the command that runs it, named in messages.
    """

    METHOD: ClassVar[str] = ""
    COMMAND: ClassVar[str] = ""

    @classmethod
    def default(cls, name):
        """The default of the field `name`."""
        return {field.name: field for field in dataclasses.fields(cls)}[name].default

    def validate(self):
        """Checks the settings; returns them.

        Raises:
            SettingsError: a required setting is missing, a value is below its
                field's `at_least`, or not one of its `choices`.
        """
        fields = dataclasses.fields(self)
        missing = [option_name(f) for f in fields
                   if f.metadata.get("required") and not getattr(self, f.name)]
        if missing:
            raise SettingsError(f"`{self.COMMAND}` needs {', '.join(missing)}. Received: none")
        for field in fields:
            value = getattr(self, field.name)
            at_least = field.metadata.get("at_least")
            if at_least is not None and value is not None and value < at_least:
                rule = "at least 1" if at_least == 1 else f">= {at_least}"
                raise SettingsError(f"{option_name(field)} must be {rule}. Received: {value}")
            choices = field.metadata.get("choices")
            if choices and value is not None and value not in choices:
                raise SettingsError(
                    f"{option_name(field)} must be one of {', '.join(choices)}. "
                    f"Received: {value!r}"
                )
        return self

    def to_config(self):
        """The run's `config.json`: the method, then every recorded setting."""
        config = {"method": self.METHOD}
        for field in dataclasses.fields(self):
            if field.metadata.get("recorded", True):
                value = getattr(self, field.name)
                config[field.name] = list(value) if isinstance(value, tuple) else value
        return config

    @classmethod
    def from_config(cls, config, **overrides):
        """The settings a run's `config.json` records, with `overrides` on top.

        Keys of other methods, and settings the file does not record
        (older runs), keep their defaults.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in config.items()
                  if key in names and cls._is_recorded(key)}
        values.update(overrides)
        return cls(**values)

    def resumed_config(self, stored, step):
        """The `config.json` of a resumed run: these settings, and the run's history.

        `history` lists each resume that changed a setting: the step it
        continued from and the changed settings' old and new values, so a
        run whose learning rate was lowered after a non-finite loss says so.

        Args:
            stored: the run's `config.json` dict before the resume.
            step: the step the run continues from.
        """
        config = self.to_config()
        changed = {
            name: {"from": stored[name], "to": value}
            for name, value in config.items()
            if name != "method" and name in stored and stored[name] != value
        }
        history = list(stored.get(HISTORY_KEY) or [])
        if changed:
            history.append({"step": int(step), "changed": changed})
        if history:
            config[HISTORY_KEY] = history
        return config

    def check_resume(self, stored):
        """Checks that a resumed run keeps what defines it.

        Args:
            stored: the run's `config.json` dict.

        Raises:
            SettingsError: the run is another method's, or a setting that is
                not `resumable` differs from the stored one.
        """
        method = stored.get("method")
        if method and method != self.METHOD:
            raise SettingsError(
                f"`{self.COMMAND}` cannot resume a run of another method. "
                f"Received: a {method} run"
            )
        fields = dataclasses.fields(self)
        changed = [
            f"{option_name(f)} {getattr(self, f.name)!r} (the run has {stored[f.name]!r})"
            for f in fields
            if f.metadata.get("recorded", True) and not f.metadata.get("resumable")
            and f.name in stored and _comparable(getattr(self, f.name)) != stored[f.name]
        ]
        if changed:
            resumable = [option_name(f) for f in fields if f.metadata.get("resumable")]
            raise SettingsError(
                f"A resumed run keeps its settings; only {', '.join(resumable)} may change. "
                f"Received: {'; '.join(changed)}"
            )

    @classmethod
    def _is_recorded(cls, name):
        field = {f.name: f for f in dataclasses.fields(cls)}[name]
        return field.metadata.get("recorded", True)


def _comparable(value):
    # JSON keeps tuples as lists.
    return list(value) if isinstance(value, tuple) else value
