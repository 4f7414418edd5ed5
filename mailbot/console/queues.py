"""The console's queues: what waits for whom, counted and listed.

* **review**: under review, oldest first, with the business days left before the proposed start
  date (the Japanese calendar: weekends, holidays, 12/29–1/3 do not count) and those at risk
  (at most ``MAILBOT_CONSOLE_RISK_BUSINESS_DAYS`` left) marked, and who approved already;
* **approved**: approved, by start date, until applied;
* **shared**: shared user codes still waiting for other offices, and which offices (those with
  IDs of the code still in use and not in an open application);
* **quarantine**: messages the worker could not process;
* **failed**: notices the outbox gave up on.

Lists read only the columns they show (never a message's raw bytes) and at most ``LIMIT`` rows;
each count is a SQL ``COUNT`` over the list's own filter (:data:`FILTERS`), so it is the true
total however many rows the page lists.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Unicode, cast, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from db.models import (
    ACTIVE,
    APPLIED,
    APPROVED,
    INBOUND_QUARANTINED,
    OPEN_STATUSES,
    OUTBOUND_FAILED,
    UNDER_REVIEW,
    Application,
    ApplicationItem,
    AuditEvent,
    InboundMessage,
    OutboundMessage,
    UserCode,
    UserId,
)
from mailbot.calendar import BusinessCalendar
from mailbot.retention import HEADER_BYTES, key_headers

QUEUES = ("review", "approved", "shared", "quarantine", "failed")
QUEUE_TITLES = {
    "review": ("審査待ち", "Under review"),
    "approved": ("承認済み（適用待ち）", "Approved, until applied"),
    "shared": ("他事業所の申込待ちの共用コード", "Shared codes waiting for other offices"),
    "quarantine": ("隔離されたメール", "Quarantined messages"),
    "failed": ("送信に失敗した通知", "Notices that failed"),
}
LIMIT = 500  # rows a queue page lists; the count says how many there are


@dataclass(frozen=True)
class ReviewRow:
    application: Application
    user_ids: tuple[str, ...]
    days_left: int  # business days before the proposed start date
    at_risk: bool
    approvers: tuple[str, ...]


@dataclass(frozen=True)
class SharedRow:
    code: str
    receipts: tuple[str, ...]  # the applications that gave the code up
    offices: tuple[str, ...]  # offices still to apply


@dataclass(frozen=True)
class MessageRow:
    id: int
    received_at: datetime
    envelope_from: str | None
    subject: str
    size: int
    attempts: int
    error: str


@dataclass(frozen=True)
class NoticeRow:
    id: int
    created_at: datetime
    kind: str
    recipient: str
    subject: str
    attempts: int
    last_error: str
    receipt_no: str | None


# What each capped queue lists (and counts): its table and filter.
FILTERS: dict[str, tuple[Any, Any]] = {
    "review": (Application, col(Application.status) == UNDER_REVIEW),
    "approved": (Application, col(Application.status) == APPROVED),
    "quarantine": (InboundMessage, col(InboundMessage.status) == INBOUND_QUARANTINED),
    "failed": (OutboundMessage, col(OutboundMessage.status) == OUTBOUND_FAILED),
}


def counts(session: Session, calendar: BusinessCalendar, today: date, risk: int) -> dict[str, Any]:
    """Each queue's size (and the review queue's number at risk), one COUNT each."""
    found: dict[str, Any] = {name: count(session, name) for name in FILTERS}
    # At risk: at most ``risk`` business days left, i.e. a proposed start date before the
    # (risk + 1)-th business day after today (business_days_between grows with the end date).
    first_safe = calendar.add_business_days(today, risk + 1)
    model, condition = FILTERS["review"]
    found["review_at_risk"] = _count(
        session, model, condition & (col(Application.proposed_start_date) < first_safe)
    )
    found["shared"] = len(shared_waiting(session))  # not capped: the whole list is its count
    return found


def count(session: Session, name: str) -> int:
    """How many items the capped queue ``name`` has (its page lists at most LIMIT)."""
    model, condition = FILTERS[name]
    return _count(session, model, condition)


def _count(session: Session, model: Any, condition: Any) -> int:
    return int(session.exec(select(func.count()).select_from(model).where(condition)).one())


def user_ids_of(session: Session, ids: list[int]) -> dict[int, tuple[str, ...]]:
    found: dict[int, list[str]] = defaultdict(list)
    for start in range(0, len(ids), 500):
        for application_id, key in session.exec(
            select(ApplicationItem.application_id, ApplicationItem.key)
            .where(col(ApplicationItem.application_id).in_(ids[start : start + 500]))
            .where(ApplicationItem.kind == "user_id")
            .order_by(col(ApplicationItem.id))
        ):
            found[application_id].append(key)
    return {key: tuple(value) for key, value in found.items()}


def _approvers(session: Session, applications: list[Application]) -> dict[int, tuple[str, ...]]:
    """Who approved each application at its current version (four-eyes: the first of two)."""
    versions = {a.id: a.version for a in applications}
    ids = list(versions)
    found: dict[int, list[str]] = defaultdict(list)
    for start in range(0, len(ids), 500):
        for event in session.exec(
            select(AuditEvent)
            .where(col(AuditEvent.application_id).in_(ids[start : start + 500]))
            .where(AuditEvent.event == "approval")
        ):
            assert event.application_id is not None
            if event.detail.get("version") == versions[event.application_id]:
                found[event.application_id].append(event.actor)
    return {key: tuple(sorted(value)) for key, value in found.items()}


def under_review(
    session: Session, calendar: BusinessCalendar, today: date, risk: int
) -> list[ReviewRow]:
    applications = list(
        session.exec(
            select(Application)
            .where(FILTERS["review"][1])
            .order_by(col(Application.received_at), col(Application.id))
            .limit(LIMIT)
        )
    )
    ids = [a.id for a in applications if a.id is not None]
    user_ids = user_ids_of(session, ids)
    approvers = _approvers(session, applications)
    rows = []
    for application in applications:
        assert application.id is not None
        left = calendar.business_days_between(today, application.proposed_start_date)
        rows.append(
            ReviewRow(
                application,
                user_ids.get(application.id, ()),
                left,
                left <= risk,
                approvers.get(application.id, ()),
            )
        )
    return rows


def approved(session: Session) -> list[tuple[Application, tuple[str, ...]]]:
    applications = list(
        session.exec(
            select(Application)
            .where(FILTERS["approved"][1])
            .order_by(col(Application.start_date), col(Application.id))
            .limit(LIMIT)
        )
    )
    user_ids = user_ids_of(session, [a.id for a in applications if a.id is not None])
    return [(a, user_ids.get(a.id or 0, ())) for a in applications]


def shared_waiting(session: Session) -> list[SharedRow]:
    """Shared codes given up by an application (under review, approved or applied) that are
    still in use, with the offices that still have IDs of the code outside any open
    application: those offices' requests are what the code waits for."""
    givers: dict[str, list[str]] = defaultdict(list)
    # Only applications that gave up a shared code: most give up none ({}). Reading every
    # applied one's JSON made the console's queue counts take 780 ms (p99) with 100,000 past
    # applications; 39 ms with this (bench/scale.py).
    gave_some = cast(col(Application.shared_codes_pending), Unicode) != "{}"
    for receipt_no, pending in session.exec(
        select(Application.receipt_no, Application.shared_codes_pending)
        .where(col(Application.status).in_((*OPEN_STATUSES, APPLIED)))
        .where(gave_some)
    ):
        for code, offices in (pending or {}).items():
            if offices:
                givers[code].append(receipt_no)
    if not givers:
        return []
    active = set(
        session.exec(
            select(UserCode.code)
            .where(col(UserCode.code).in_(list(givers)))
            .where(UserCode.status == ACTIVE)
        )
    )
    held = (
        select(ApplicationItem.key)
        .join(Application, col(Application.id) == col(ApplicationItem.application_id))
        .where(ApplicationItem.kind == "user_id")
        .where(col(ApplicationItem.open).is_(True))
        .where(col(Application.status).in_(OPEN_STATUSES))
    )
    waiting: dict[str, set[str]] = defaultdict(set)
    if active:
        for code, office in session.exec(
            select(UserId.user_code, UserId.office_code)
            .where(col(UserId.user_code).in_(sorted(active)))
            .where(UserId.status == ACTIVE)
            .where(col(UserId.user_id).not_in(held))
        ):
            waiting[code].add(office)
    return [
        SharedRow(code, tuple(sorted(givers[code])), tuple(sorted(waiting[code])))
        for code in sorted(givers)
        if code in active and waiting[code]
    ]


def quarantined(session: Session) -> list[MessageRow]:
    m = InboundMessage
    # The header block only (a quarantined message's headers were never extracted).
    block = func.substr(col(m.raw), 1, HEADER_BYTES)
    rows = session.execute(
        sa_select(
            col(m.id),
            col(m.received_at),
            col(m.envelope_from),
            block,
            col(m.size),
            col(m.attempts),
            col(m.error),
        )
        .where(FILTERS["quarantine"][1])
        .order_by(col(m.id))
        .limit(LIMIT)
    )
    return [
        MessageRow(
            id=row[0] or 0,
            received_at=row[1],
            envelope_from=row[2],
            subject=key_headers(bytes(row[3] or b"")).get("subject", ""),
            size=row[4],
            attempts=row[5],
            error=_last_line(row[6]),
        )
        for row in rows
    ]


def _last_line(error: str | None) -> str:
    """A traceback's last line says what went wrong; the page shows the whole of it."""
    lines = [line for line in (error or "").strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def failed_notices(session: Session) -> list[NoticeRow]:
    o = OutboundMessage
    rows = session.execute(
        sa_select(
            col(o.id),
            col(o.created_at),
            col(o.kind),
            col(o.recipient),
            col(o.subject),
            col(o.attempts),
            col(o.last_error),
            col(Application.receipt_no),
        )
        .join(Application, col(Application.id) == col(o.application_id), isouter=True)
        .where(FILTERS["failed"][1])
        .order_by(col(o.id))
        .limit(LIMIT)
    )
    return [
        NoticeRow(
            id=row[0] or 0,
            created_at=row[1],
            kind=row[2],
            recipient=row[3],
            subject=row[4] or "",
            attempts=row[5],
            last_error=(row[6] or "")[:300],
            receipt_no=row[7],
        )
        for row in rows
    ]
