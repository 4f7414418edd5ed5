"""Queries that need care: the registry slice the rules see, and claiming work across processes."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_
from sqlmodel import Session, col, select

from db.models import (
    INBOUND_PENDING,
    OPEN_STATUSES,
    Application,
    ApplicationItem,
    InboundMessage,
    Office,
    OfficeContact,
    UserId,
)
from mailbot.normalize import user_code_of
from mailbot.rules import OfficeInfo, RegistryView, UserIdInfo


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

    Offices: those the sender is a contact of, plus the one the request names. User IDs: the
    ones named, plus every ID (in any office) of every code involved, because rules 3 and 4
    look at whole codes.
    """
    named = list(user_ids)
    codes = {user_code_of(uid) for uid in named} | set(user_codes)
    offices = _offices(session, sender, office_code)
    rows = session.exec(
        select(UserId).where(or_(col(UserId.user_id).in_(named), col(UserId.user_code).in_(codes)))
    ).all()
    held = _open_holders(session, [row.user_id for row in rows])
    infos = {
        row.user_id: UserIdInfo(
            user_id=row.user_id,
            office_code=row.office_code,
            status="abolished" if row.status == "abolished" else "active",
            abolished_on=row.abolished_on,
            open_receipt_no=held.get(row.user_id),
        )
        for row in rows
    }
    for row in rows:  # sharing offices must be known to name them (rule 4)
        if row.office_code not in offices:
            offices.update(_offices_by_code(session, [row.office_code]))
    return RegistryView(offices=offices, user_ids=infos)


def _offices(session: Session, sender: str, office_code: str | None) -> dict[str, OfficeInfo]:
    codes = set(
        session.exec(select(OfficeContact.office_code).where(OfficeContact.email == sender.lower()))
    )
    if office_code:
        codes.add(office_code)
    return _offices_by_code(session, codes)


def _offices_by_code(session: Session, codes: Iterable[str]) -> dict[str, OfficeInfo]:
    wanted = list(codes)
    contacts: dict[str, set[str]] = {}
    for office_code, email in session.exec(
        select(OfficeContact.office_code, OfficeContact.email).where(
            col(OfficeContact.office_code).in_(wanted)
        )
    ):
        contacts.setdefault(office_code, set()).add(email)
    return {
        office.code: OfficeInfo(
            code=office.code,
            company=office.company,
            office=office.office_name,
            department=office.department,
            contact_emails=frozenset(contacts.get(office.code, ())),
        )
        for office in session.exec(select(Office).where(col(Office.code).in_(wanted)))
    }


def _open_holders(session: Session, user_ids: list[str]) -> dict[str, str]:
    """user ID → receipt number of the open application that holds it."""
    query = (
        select(ApplicationItem.key, Application.receipt_no)
        .join(Application, col(Application.id) == ApplicationItem.application_id)
        .where(col(ApplicationItem.open).is_(True))
        # Applied applications' ID items stay open (see ApplicationItem); they hold nothing open.
        .where(col(Application.status).in_(OPEN_STATUSES))
        .where(ApplicationItem.kind == "user_id")
        .where(col(ApplicationItem.key).in_(user_ids))
    )
    return dict(session.exec(query).all())


def claim_pending_inbound(session: Session, limit: int) -> list[InboundMessage]:
    """Lock the oldest pending messages (up to ``limit``) for this transaction.

    On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets several workers take different messages;
    the rows stay locked until the processing transaction commits (status done) or rolls back
    (pending again), so a crash mid-way loses nothing and repeats nothing. SQLite's
    BEGIN IMMEDIATE already serialises writers, so the plain select is enough there.
    """
    query = (
        select(InboundMessage)
        .where(InboundMessage.status == INBOUND_PENDING)
        .order_by(col(InboundMessage.id))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.exec(query))
