"""The shared output of every request parser: labelled raw values, before any validation."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailbot.problems import Problem


@dataclass(frozen=True)
class RawField:
    """One form field as found: canonical field name, the text as typed, and where it stood.

    ``line_locations``, when a parser knows them, give the place of each line of ``value``
    (a list field read from several cells: ``B4``, ``B5`` …), so a bad ID is reported at its
    own cell rather than at the field's first one.
    """

    name: str
    value: str
    location: str | None = None
    line_locations: tuple[str | None, ...] = ()

    def location_of_line(self, index: int) -> str | None:
        if index < len(self.line_locations):
            return self.line_locations[index] or self.location
        return self.location


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
