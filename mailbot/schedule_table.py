"""The schedule table (スケジュール表): the system registration dates start dates fall on."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sqlmodel import Session, col, delete, select

from db.models import RegistrationDate
from mailbot.errors import ImportFileError
from mailbot.textfile import read_text_japanese


def read_schedule_file(path: Path) -> list[date]:
    """One ``YYYY-MM-DD`` a line; ``#`` starts a comment; blank lines are fine."""
    days: list[date] = []
    for line_no, line in enumerate(read_text_japanese(path).splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            days.append(date.fromisoformat(text))
        except ValueError:
            raise ImportFileError(
                str(path), line_no, f"{text!r} is not a date written YYYY-MM-DD (e.g. 2026-12-01)"
            ) from None
    if not days:
        raise ImportFileError(str(path), None, "the file has no dates")
    return sorted(set(days))


def import_schedule(session: Session, path: Path, *, replace: bool = False) -> int:
    """Add the file's dates (or, with ``replace``, make them the whole schedule)."""
    days = read_schedule_file(path)
    if replace:
        session.execute(delete(RegistrationDate))
    existing = set(session.exec(select(col(RegistrationDate.day))))
    for day in days:
        if day not in existing:
            session.add(RegistrationDate(day=day))
    session.flush()
    return len(days)


def registration_dates(session: Session, *, on_or_after: date | None = None) -> list[date]:
    query = select(col(RegistrationDate.day)).order_by(col(RegistrationDate.day))
    if on_or_after is not None:
        query = query.where(col(RegistrationDate.day) >= on_or_after)
    return list(session.exec(query))
