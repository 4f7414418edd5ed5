"""Reading the registry: the slice of it one request touches, in the shape the rules read
(:mod:`mailbot.registry_view`), whether an address is a contact, and an office's contract rows
and applications (the contract reply and the office page)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Subquery, Table, func, or_
from sqlalchemy import desc as sql_desc
from sqlalchemy import select as core_select
from sqlmodel import Session, SQLModel, select

from db.models import (
    ABOLISHED,
    ACTIVE,
    OPEN_STATUSES,
    Application,
    ApplicationItem,
    Office,
    OfficeContact,
    UserId,
)
from mailbot.normalize import user_code_of
from mailbot.registry_view import OfficeInfo, RegistryView, UserIdInfo

# Core tables: the registry slice is read as plain columns, not ORM objects.
_TABLES = SQLModel.metadata.tables
_USER_ID: Table = _TABLES[UserId.__tablename__]
_ITEM: Table = _TABLES[ApplicationItem.__tablename__]
_APPLICATION: Table = _TABLES[Application.__tablename__]
_OFFICE: Table = _TABLES[Office.__tablename__]
_CONTACT: Table = _TABLES[OfficeContact.__tablename__]


def is_registered_contact(session: Session, address: str) -> bool:
    """Whether ``address`` is a contact of any office (the gate before anything else)."""
    query = select(OfficeContact.id).where(OfficeContact.email == address.lower()).limit(1)
    return session.exec(query).first() is not None


def registry_view(
    session: Session,
    *,
    sender: str,
    office_code: str | None,
    user_ids: Iterable[str],
    user_codes: Iterable[str],
) -> RegistryView:
    """The part of the registry one request touches, in the shape mailbot.rules expects.

    Offices: those the sender is a contact of, the one the request names, and those of every
    ID found (sharing offices must be known to name them, rule 4). User IDs: the ones named,
    plus every ID (in any office) of every code involved, because rules 3 and 4 look at whole
    codes. Four plain-column queries, whatever the request names: this runs for every request.
    """
    named = list(user_ids)
    codes = {user_code_of(uid) for uid in named} | set(user_codes)
    u, a = _USER_ID.c, _APPLICATION.c
    holder = _open_holders(a.receipt_no)
    rows = session.execute(
        core_select(u.user_id, u.office_code, u.status, u.abolished_on, holder.c.receipt_no)
        .outerjoin(holder, holder.c.key == u.user_id)
        .where(or_(u.user_id.in_(named), u.user_code.in_(codes)))
    ).all()
    infos = {
        user_id: UserIdInfo(
            user_id=user_id,
            office_code=office,
            status=ABOLISHED if status == ABOLISHED else ACTIVE,
            abolished_on=abolished_on,
            open_receipt_no=receipt_no,
        )
        for user_id, office, status, abolished_on, receipt_no in rows
    }
    wanted = _contact_offices(session, sender) | {info.office_code for info in infos.values()}
    if office_code:
        wanted.add(office_code)
    return RegistryView(offices=_offices_by_code(session, wanted), user_ids=infos)


def _open_holders(*columns: ColumnElement[Any]) -> Subquery:
    """Each user ID held by an open application (under review or approved), as ``key``, with
    ``columns`` of that application."""
    i, a = _ITEM.c, _APPLICATION.c
    return (
        core_select(i.key, *columns)
        .join(_APPLICATION, a.id == i.application_id)
        .where(i.open.is_(True), i.kind == "user_id")
        # Applied applications' ID items stay open (see ApplicationItem); they hold nothing open.
        .where(a.status.in_(OPEN_STATUSES))
        .subquery()
    )


def _contact_offices(session: Session, sender: str) -> set[str]:
    c = _CONTACT.c
    query = core_select(c.office_code).where(c.email == sender.lower())
    return set(session.execute(query).scalars())


def _offices_by_code(session: Session, codes: Iterable[str]) -> dict[str, OfficeInfo]:
    wanted = sorted(codes)
    if not wanted:
        return {}
    c, o = _CONTACT.c, _OFFICE.c
    contacts: dict[str, set[str]] = {}
    for office_code, email in session.execute(
        core_select(c.office_code, c.email).where(c.office_code.in_(wanted))
    ):
        contacts.setdefault(office_code, set()).add(email)
    return {
        code: OfficeInfo(
            code=code,
            company=company,
            office=office_name,
            department=department,
            contact_emails=frozenset(contacts.get(code, ())),
        )
        for code, company, office_name, department in session.execute(
            core_select(o.code, o.company, o.office_name, o.department).where(o.code.in_(wanted))
        )
    }


# --- an office's contract and applications ---------------------------------------------------


def contact_office_codes(session: Session, sender: str) -> list[str]:
    """The offices ``sender`` is a registered contact of, by code."""
    return sorted(_contact_offices(session, sender))


def office_infos(session: Session, codes: Iterable[str]) -> dict[str, OfficeInfo]:
    """Offices by code, with their contacts (two queries, whatever the number)."""
    return _offices_by_code(session, codes)


@dataclass(frozen=True)
class ContractIdRow:
    """One registered user ID with the open application (under review or approved) holding it."""

    user_id: str
    user_code: str
    office_code: str
    network: str
    status: str
    abolished_on: date | None
    receipt_no: str | None
    application_status: str | None
    proposed_start_date: date | None
    start_date: date | None


def contract_id_rows(session: Session, office_codes: Sequence[str]) -> list[ContractIdRow]:
    """Every user ID of the offices, and every ID (in any office) of a user code they hold, so
    that shared codes show who else holds them and who has applied. One query (the IDs by the
    ``office_code`` and ``user_code`` indexes, the holders by the open-item index)."""
    if not office_codes:
        return []
    u, a = _USER_ID.c, _APPLICATION.c
    holder = _open_holders(a.receipt_no, a.status, a.proposed_start_date, a.start_date)
    own_codes = core_select(u.user_code).where(u.office_code.in_(list(office_codes)))
    rows = session.execute(
        core_select(
            u.user_id,
            u.user_code,
            u.office_code,
            u.network,
            u.status,
            u.abolished_on,
            holder.c.receipt_no,
            holder.c.status,
            holder.c.proposed_start_date,
            holder.c.start_date,
        )
        .outerjoin(holder, holder.c.key == u.user_id)
        .where(or_(u.office_code.in_(list(office_codes)), u.user_code.in_(own_codes)))
        .order_by(u.office_code, u.user_id)
    ).all()
    return [ContractIdRow(*row) for row in rows]


@dataclass(frozen=True)
class OfficeApplicationRow:
    receipt_no: str
    status: str
    received_on: date
    desired_start_date: date
    proposed_start_date: date
    start_date: date | None
    user_ids: tuple[str, ...]


def office_applications(
    session: Session, office_code: str, limit: int
) -> tuple[list[OfficeApplicationRow], int]:
    """The office's newest ``limit`` applications, newest first, with their user IDs; and how
    many it has in all. Three queries (by the ``office_code`` and ``application_id`` indexes)."""
    a, i = _APPLICATION.c, _ITEM.c
    total = session.execute(
        core_select(func.count()).select_from(_APPLICATION).where(a.office_code == office_code)
    ).scalar_one()
    found = session.execute(
        core_select(
            a.id,
            a.receipt_no,
            a.status,
            a.received_on,
            a.desired_start_date,
            a.proposed_start_date,
            a.start_date,
        )
        .where(a.office_code == office_code)
        .order_by(sql_desc(a.received_at), sql_desc(a.id))
        .limit(limit)
    ).all()
    ids: dict[int, list[str]] = {row[0]: [] for row in found}
    if ids:
        for application_id, key in session.execute(
            core_select(i.application_id, i.key)
            .where(i.application_id.in_(list(ids)), i.kind == "user_id")
            .order_by(i.id)
        ):
            ids[application_id].append(key)
    applications = [
        OfficeApplicationRow(
            receipt_no=receipt_no,
            status=status,
            received_on=received_on,
            desired_start_date=desired,
            proposed_start_date=proposed,
            start_date=start,
            user_ids=tuple(ids[row_id]),
        )
        for row_id, receipt_no, status, received_on, desired, proposed, start in found
    ]
    return applications, int(total)
