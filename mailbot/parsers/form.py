"""The shared output of every request parser: labelled raw values, before any validation, and
the one rule every format follows for a field given twice."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from mailbot.parsers.labels import CANONICAL_LABEL_JA, LIST_FIELDS
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


class FieldCollector:
    """Fields found in one file, with the rule every format shares for a field given twice.

    A list field given twice is one list. Another field given twice must have the same value
    (ignoring width, case and spaces); a different one is a ``form.duplicate_field`` problem
    naming both places, reported once per field. An empty occurrence never hides a value.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.fields: dict[str, RawField] = {}
        self.problems: list[Problem] = []
        self._conflicted: set[str] = set()

    def add(
        self,
        name: str,
        value: str,
        location: str,
        line_locations: tuple[str | None, ...] | None = None,
    ) -> None:
        lines = line_locations or (location,) * (value.count("\n") + 1)
        new = RawField(name, value, location, lines)
        old = self.fields.get(name)
        if old is None or (not old.value and value):
            self.fields[name] = new
        elif name in LIST_FIELDS:
            if value:
                merged = f"{old.value}\n{value}"
                self.fields[name] = RawField(name, merged, old.location, old.line_locations + lines)
        elif value and name not in self._conflicted and comparable(value) != comparable(old.value):
            self._conflicted.add(name)
            self.problems.append(duplicate_problem(old, new))

    def form(self, extra_problems: Sequence[Problem] = ()) -> RawForm:
        return RawForm(self.source, dict(self.fields), [*self.problems, *extra_problems])


def comparable(value: str) -> str:
    """Values that differ only in width, case or spacing are the same value given twice."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", value).casefold())


def duplicate_problem(first: RawField, second: RawField) -> Problem:
    """A field given twice with different values, naming both places."""
    label = CANONICAL_LABEL_JA.get(first.name, first.name)
    return Problem(
        code="form.duplicate_field",
        field=first.name,
        value=second.value,
        message_ja=(
            f"「{label}」が2回、異なる値で書かれています（{first.location}:「{first.value}」、"
            f"{second.location}:「{second.value}」）。どちらか1つにしてください。"
        ),
        message_en=(
            f'"{first.name}" is given twice with different values ({first.location}: '
            f'"{first.value}", {second.location}: "{second.value}"). Keep only one.'
        ),
        location=second.location,
    )
