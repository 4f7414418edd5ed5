"""The registry of contracts: offices, their contacts, user codes and user IDs.

``import_registry`` loads the operator's CSV (docs/domain.md#what-the-operator-loads)
all-or-nothing: every row is checked first, and one bad row aborts the import naming its line.
Re-importing updates offices, contacts and the office of each ID; it never revives an abolished
ID (that state belongs to mailbot, not to the file) and never deletes IDs that applications may
refer to.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Table, bindparam, insert, update
from sqlmodel import Session, SQLModel, col, delete, select

from db.models import Office, OfficeContact, UserCode, UserId
from mailbot.errors import ImportFileError, NotFoundError
from mailbot.normalize import (
    InvalidUserId,
    ident_of,
    network_of,
    nfkc,
    normalise_office_code,
    normalise_user_id,
    user_code_of,
)
from mailbot.textfile import read_text_japanese

REGISTRY_COLUMNS = ("office_code", "company", "office", "department", "contact_emails", "user_id")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class OfficeRow:
    code: str
    company: str
    office: str
    department: str
    contacts: tuple[str, ...]
    line: int


@dataclass
class RegistryFile:
    offices: dict[str, OfficeRow] = field(default_factory=dict)
    user_ids: dict[str, str] = field(default_factory=dict)  # user_id -> office code


@dataclass(frozen=True)
class ImportSummary:
    offices: int
    user_ids: int
    new_user_ids: int


def parse_contacts(text: str) -> tuple[str, ...]:
    return tuple(part.lower() for part in re.split(r"[\s;,]+", nfkc(text)) if part)


def read_registry_file(path: Path) -> RegistryFile:
    """Parse and check the whole file; raise ImportFileError at the first bad line."""
    reader = csv.reader(io.StringIO(read_text_japanese(path), newline=""))
    name = str(path)
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != REGISTRY_COLUMNS:
        raise ImportFileError(name, 1, f"the header must be {','.join(REGISTRY_COLUMNS)}")
    result = RegistryFile()
    for line_no, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        _add_row(result, name, line_no, cells)
    if not result.user_ids:
        raise ImportFileError(name, None, "the file has no user IDs")
    return result


def _add_row(result: RegistryFile, name: str, line_no: int, cells: list[str]) -> None:
    if len(cells) != len(REGISTRY_COLUMNS):
        raise ImportFileError(
            name, line_no, f"expected {len(REGISTRY_COLUMNS)} columns, got {len(cells)}"
        )
    code, company, office, department, contacts_text, user_id_text = (c.strip() for c in cells)
    code = normalise_office_code(code)
    if not code:
        raise ImportFileError(name, line_no, "office_code is empty")
    if not company or not office:
        raise ImportFileError(name, line_no, "company and office must not be empty")
    contacts = parse_contacts(contacts_text)
    if not contacts:
        raise ImportFileError(name, line_no, "contact_emails is empty: name at least one address")
    for address in contacts:
        if not EMAIL_PATTERN.match(address):
            raise ImportFileError(
                name, line_no, f"contact_emails has an invalid address {address!r}"
            )
    try:
        user_id = normalise_user_id(user_id_text)
    except InvalidUserId:
        raise ImportFileError(
            name, line_no, f"user_id {user_id_text!r} is not 8 letters or digits (e.g. 1ANACA0A)"
        ) from None
    row = OfficeRow(code, company, office, department, contacts, line_no)
    known = result.offices.setdefault(code, row)
    if (known.company, known.office, known.department, set(known.contacts)) != (
        company,
        office,
        department,
        set(contacts),
    ):
        raise ImportFileError(
            name, line_no, f"office {code} differs from its first row (line {known.line})"
        )
    if user_id in result.user_ids:
        raise ImportFileError(name, line_no, f"user_id {user_id} appears twice")
    result.user_ids[user_id] = code


def import_registry(session: Session, path: Path) -> ImportSummary:
    """Load ``path`` into the registry inside ``session``'s transaction (all or nothing).

    Set-based: one lookup of the codes and IDs already known per chunk, then bulk inserts and
    updates. A registry of 100,000 IDs imports in seconds instead of one round trip per row.
    """
    parsed = read_registry_file(path)
    for row in parsed.offices.values():
        _upsert_office(session, row)
    session.flush()  # offices before the IDs that point at them
    _insert_missing_codes(session, {user_code_of(u) for u in parsed.user_ids})
    known = _known_user_ids(session, list(parsed.user_ids))
    new_rows = [
        {
            "user_id": user_id,
            "user_code": user_code_of(user_id),
            "ident": ident_of(user_id),
            "office_code": office_code,
            "network": network_of(user_id),
            "status": "active",
        }
        for user_id, office_code in parsed.user_ids.items()
        if user_id not in known
    ]
    moved = [
        {"key": user_id, "office": office_code}
        for user_id, office_code in parsed.user_ids.items()
        if user_id in known and known[user_id] != office_code
    ]
    if new_rows:
        session.execute(insert(_USER_ID), new_rows)
    if moved:
        session.execute(
            update(_USER_ID)
            .where(_USER_ID.c.user_id == bindparam("key"))
            .values(office_code=bindparam("office")),
            moved,
        )
    return ImportSummary(len(parsed.offices), len(parsed.user_ids), len(new_rows))


# Lookups go in chunks: SQLite refuses statements with more than 32,766 parameters.
_CHUNK = 1000
_USER_ID: Table = SQLModel.metadata.tables[UserId.__tablename__]
_USER_CODE: Table = SQLModel.metadata.tables[UserCode.__tablename__]


def _chunks(keys: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(keys), _CHUNK):
        yield keys[start : start + _CHUNK]


def _insert_missing_codes(session: Session, codes: set[str]) -> None:
    existing: set[str] = set()
    for chunk in _chunks(sorted(codes)):
        found = session.execute(select(_USER_CODE.c.code).where(_USER_CODE.c.code.in_(chunk)))
        existing.update(found.scalars())
    missing = [{"code": code, "status": "active"} for code in sorted(codes - existing)]
    if missing:
        session.execute(insert(_USER_CODE), missing)


def _known_user_ids(session: Session, user_ids: list[str]) -> dict[str, str]:
    """The IDs of the file the registry already has, with their current office."""
    known: dict[str, str] = {}
    u = _USER_ID.c
    for chunk in _chunks(user_ids):
        rows = session.execute(select(u.user_id, u.office_code).where(u.user_id.in_(chunk)))
        known.update({user_id: office for user_id, office in rows})
    return known


def _upsert_office(session: Session, row: OfficeRow) -> None:
    office = session.get(Office, row.code)
    if office is None:
        office = Office(code=row.code, company=row.company, office_name=row.office)
    office.company, office.office_name, office.department = row.company, row.office, row.department
    session.add(office)
    session.flush()
    session.execute(delete(OfficeContact).where(col(OfficeContact.office_code) == row.code))
    for address in row.contacts:
        session.add(OfficeContact(office_code=row.code, email=address))


def describe(session: Session, key: str) -> dict[str, Any]:
    """What the registry knows about a user ID, a user code or an office code."""
    normal = nfkc(key).strip().upper().replace("-", "").replace(" ", "")
    if len(normal) == 8 and (user := session.get(UserId, normal)) is not None:
        return {
            "kind": "user_id",
            **user_id_summary(user),
            "office": _office_dict(session, user.office_code),
            "user_code": _code_dict(session, user.user_code),
        }
    if len(normal) == 5 and session.get(UserCode, normal) is not None:
        return {"kind": "user_code", **_code_dict(session, normal)}
    if session.get(Office, normal) is not None:
        office = _office_dict(session, normal)
        ids = session.exec(
            select(UserId).where(UserId.office_code == normal).order_by(col(UserId.user_id))
        )
        return {"kind": "office", **office, "user_ids": [user_id_summary(u) for u in ids]}
    raise NotFoundError(f"{key!r} is not a user ID, user code or office code in the registry")


def user_id_summary(user: UserId) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "user_code": user.user_code,
        "ident": user.ident,
        "network": user.network,
        "office_code": user.office_code,
        "status": user.status,
        "abolished_on": user.abolished_on.isoformat() if user.abolished_on else None,
    }


def _office_dict(session: Session, code: str) -> dict[str, Any]:
    office = session.get(Office, code)
    if office is None:
        raise NotFoundError(f"office {code} is not in the registry")
    contacts = session.exec(
        select(OfficeContact.email)
        .where(OfficeContact.office_code == code)
        .order_by(col(OfficeContact.email))
    )
    return {
        "office_code": office.code,
        "company": office.company,
        "office": office.office_name,
        "department": office.department,
        "contact_emails": list(contacts),
    }


def _code_dict(session: Session, code: str) -> dict[str, Any]:
    user_code = session.get(UserCode, code)
    assert user_code is not None
    ids = list(
        session.exec(select(UserId).where(UserId.user_code == code).order_by(col(UserId.user_id)))
    )
    offices = sorted({u.office_code for u in ids})
    return {
        "user_code": code,
        "status": user_code.status,
        "abolished_on": user_code.abolished_on.isoformat() if user_code.abolished_on else None,
        "shared": len(offices) > 1,
        "offices": offices,
        "user_ids": [u.user_id for u in ids],
    }
