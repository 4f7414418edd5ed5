"""Receipt numbers (申込受付番号) ``YYNNNNL``: year, serial within the year, series letter.

Decision of docs/domain.md#receipt-numbers, kept here only: the serial starts at 0001 each year with
letter A; after 9999 the letter advances (B, C, …). The n-th number of a year is derived from one
per-year counter, bumped by an atomic upsert inside the caller's transaction, so a rolled-back
application gives its number back and concurrent workers can never collide.
"""

from __future__ import annotations

import re
import string
import unicodedata
from datetime import date

from sqlmodel import Session, SQLModel

from db.dialect import upsert
from db.models import ReceiptCounter
from mailbot.errors import MailbotError

SERIALS_PER_LETTER = 9999
LETTERS = string.ascii_uppercase
RECEIPT_NO_PATTERN = re.compile(r"^(\d{2})(\d{4})([A-Z])$")


class ReceiptSpaceExhausted(MailbotError):
    """More than 26 × 9999 applications in one year: the format has no room left."""


def format_receipt_no(year: int, issued: int) -> str:
    """The ``issued``-th receipt number of ``year`` (1-based)."""
    if issued < 1:
        raise ValueError("issued counts from 1")
    letter_index, serial_index = divmod(issued - 1, SERIALS_PER_LETTER)
    if letter_index >= len(LETTERS):
        raise ReceiptSpaceExhausted(
            f"receipt numbers for {year} are used up ({issued} issued); extend the format"
        )
    return f"{year % 100:02d}{serial_index + 1:04d}{LETTERS[letter_index]}"


def parse_receipt_no(text: str) -> str | None:
    """A receipt number as people quote it (full width, lower case) → canonical, or None."""
    candidate = unicodedata.normalize("NFKC", text).strip().upper()
    return candidate if RECEIPT_NO_PATTERN.match(candidate) else None


def allocate_receipt_no(session: Session, received_on: date) -> str:
    """Take the next receipt number for the year of ``received_on`` in ``session``'s transaction.

    One ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` statement: no read-then-write, which
    would silently hand out the same number twice on SQLite.
    """
    year = received_on.year
    table = SQLModel.metadata.tables[ReceiptCounter.__tablename__]
    statement = (
        upsert(session, table)
        .values(year=year, issued=1)
        .on_conflict_do_update(index_elements=["year"], set_={"issued": table.c.issued + 1})
        .returning(table.c.issued)
    )
    issued = session.execute(statement).scalar_one()
    return format_receipt_no(year, int(issued))
