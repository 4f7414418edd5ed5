"""The staff registry: who reviews applications. Removing a member deactivates them, so that
their past decisions and tokens keep pointing at a real row."""

from __future__ import annotations

from sqlmodel import Session, col, select

from db.models import Staff
from mailbot.errors import MailbotError, NotFoundError
from mailbot.normalize import normalise_email


def add_staff(session: Session, email: str, name: str = "") -> Staff:
    address = normalise_email(email).lower()  # compared case-insensitively, like contacts
    if "@" not in address:
        raise MailbotError(f"{email!r} is not an email address")
    member = session.exec(select(Staff).where(Staff.email == address)).first()
    if member is None:
        member = Staff(email=address, name=name)
    member.active = True
    if name:
        member.name = name
    session.add(member)
    session.flush()
    return member


def remove_staff(session: Session, email: str) -> Staff:
    address = normalise_email(email).lower()  # compared case-insensitively, like contacts
    member = session.exec(select(Staff).where(Staff.email == address)).first()
    if member is None or not member.active:
        raise NotFoundError(f"{address} is not an active staff member")
    member.active = False
    session.add(member)
    return member


def list_staff(session: Session, *, include_inactive: bool = False) -> list[Staff]:
    query = select(Staff).order_by(col(Staff.email))
    if not include_inactive:
        query = query.where(col(Staff.active).is_(True))
    return list(session.exec(query))


def active_staff(session: Session) -> list[Staff]:
    return list_staff(session)


def find_staff(session: Session, email: str) -> Staff:
    """An active staff member by address; refusing anyone else (the CLI's ``--by``)."""
    address = normalise_email(email).lower()
    member = session.exec(select(Staff).where(Staff.email == address)).first()
    if member is None or not member.active:
        raise NotFoundError(f"{address} is not an active staff member (see: mailbot staff list)")
    return member
