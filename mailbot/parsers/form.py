"""The shared output of every request parser: labelled raw values, before any validation."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailbot.problems import Problem


@dataclass(frozen=True)
class RawField:
    """One form field as found: canonical field name, the text as typed, and where it stood."""

    name: str
    value: str
    location: str | None = None


@dataclass
class RawForm:
    """What a parser found: fields by canonical name, plus problems such as unknown labels.

    ``source`` names the input (``本文`` for the mail body, or an attachment's file name).
    Values are kept exactly as typed (multi-line for lists); typing and normalisation happen in
    :mod:`mailbot.draft`, the same for every format.
    """

    source: str
    fields: dict[str, RawField] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.fields and not self.problems
