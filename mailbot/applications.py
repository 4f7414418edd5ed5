"""Creating, finishing and reading applications: the only writer of a new application (called
by intake) and of an application's status change (review, withdrawal, cancellation), each with
its audit event. Applying on the start date changes many at once, set-based (mailbot.applying)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, datetime, tzinfo
from typing import Any

from sqlalchemy import Subquery, func, update
from sqlalchemy import select as core_select
from sqlmodel import Session, SQLModel, col, select

from db.models import (
    APPLIED,
    APPROVED,
    CANCELLED,
    REJECTED,
    UNDER_REVIEW,
    WITHDRAWN,
    Application,
    ApplicationItem,
    AuditEvent,
    InboundMessage,
)
from mailbot.clock import as_utc
from mailbot.errors import NotFoundError
from mailbot.logs import add_log_fields
from mailbot.receipts import allocate_receipt_no, parse_receipt_no
from mailbot.rules import Plan

log = logging.getLogger(__name__)

# The guide's words for each status, for notices, the CLI and the status page.
STATUS_JA = {
    UNDER_REVIEW: "内容確認中",
    APPROVED: "審査終了（承認）",
    REJECTED: "審査終了（却下）",
    WITHDRAWN: "取下げ",
    CANCELLED: "取消",
    APPLIED: "適用済み",
}
# How an application was decided, in one word, for the answer to a decision that came too late
# ("… は … に … が承認済みです").
DECISION_JA = {
    APPROVED: "承認",
    REJECTED: "却下",
    WITHDRAWN: "取下げ",
    CANCELLED: "承認後に取消",
}


def create_application(
    session: Session,
    plan: Plan,
    *,
    sender: str,
    inbound: InboundMessage,
    received_on: date,
    now: datetime,
) -> Application:
    """Number the application and write it with its items and first audit event.

    Runs in the caller's transaction with the outbox rows, so either all of it exists or none.
    The partial unique index on open items makes a racing second application for the same ID
    fail here (IntegrityError) instead of slipping through.
    """
    application = Application(
        receipt_no=allocate_receipt_no(session, received_on),
        status=UNDER_REVIEW,
        office_code=plan.office_code,
        sender=sender,
        applicant_name=plan.applicant_name,
        applicant_email=plan.applicant_email,
        applicant_phone=plan.applicant_phone,
        manager_name=plan.manager_name,
        manager_email=plan.manager_email,
        reason=plan.reason,
        remarks=plan.remarks,
        desired_start_date=plan.desired_start_date,
        proposed_start_date=plan.proposed_start_date,
        received_at=now,
        received_on=received_on,
        inbound_id=inbound.id,
        shared_codes_pending={
            code: list(offices) for code, offices in plan.shared_codes_pending.items()
        },
        updated_at=now,
    )
    session.add(application)
    session.flush()
    assert application.id is not None
    for user_id in plan.user_ids:
        session.add(ApplicationItem(application_id=application.id, kind="user_id", key=user_id))
    # Only codes this application abolishes alone are items. A shared code is held by several
    # offices' applications at once (rule 4), so it must not take the one-open-holder index;
    # it is recorded in shared_codes_pending and abolished when its last ID is.
    for code in plan.codes_abolished:
        session.add(ApplicationItem(application_id=application.id, kind="user_code", key=code))
    audit(
        session,
        application,
        "received",
        actor=sender,
        now=now,
        inbound_id=inbound.id,
        receipt_no=application.receipt_no,
        message_id=inbound.message_id,
        user_ids=list(plan.user_ids),
        proposed_start_date=plan.proposed_start_date.isoformat(),
    )
    session.flush()
    # The rest of this message's processing is logged with the receipt number too.
    add_log_fields(receipt_no=application.receipt_no)
    log.info(
        "application %s received (office %s, %d user ID(s))",
        application.receipt_no,
        plan.office_code,
        len(plan.user_ids),
    )
    return application


# The audit event each status an application is moved to is recorded as.
FINISHED_EVENTS = {
    APPROVED: "review_finished",
    REJECTED: "review_finished",
    WITHDRAWN: "withdrawn",
    CANCELLED: "cancelled",
}


def finish(
    session: Session,
    application: Application,
    status: str,
    *,
    actor: str,
    now: datetime,
    via: str,
    reason: str | None = None,
    inbound_id: int | None = None,
) -> None:
    """Move ``application`` to ``status`` in the caller's transaction, with its audit event.

    Who, when and why go on the application; its version goes up, so every token issued for
    the old state stops working; unless it stays open (approved, until applied), its items stop
    holding their IDs, so a new application may name them. ``via`` (mail or cli) and
    ``inbound_id`` (the reply that asked for it) go to the audit log.
    """
    application.status = status
    application.decided_by = actor
    application.decided_at = now
    application.decision_reason = reason
    application.version += 1
    application.updated_at = now
    session.add(application)
    if status not in (UNDER_REVIEW, APPROVED):
        session.execute(
            update(ApplicationItem)
            .where(col(ApplicationItem.application_id) == application.id)
            .values(open=False)
        )
    if status == CANCELLED:  # what was called off: the start date it no longer has
        assert application.start_date is not None
        detail = {"reason": reason, "start_date": application.start_date.isoformat(), "via": via}
    else:
        detail = {"status": status, "reason": reason, "via": via}
    event = FINISHED_EVENTS[status]
    audit(session, application, event, actor=actor, now=now, inbound_id=inbound_id, **detail)


def audit(
    session: Session,
    application: Application,
    event: str,
    *,
    actor: str,
    now: datetime,
    inbound_id: int | None = None,
    **detail: Any,
) -> None:
    """One event of ``application``'s audit trail (append-only), in the caller's transaction."""
    session.add(
        AuditEvent(
            at=now,
            application_id=application.id,
            event=event,
            actor=actor,
            inbound_id=inbound_id,
            detail=detail,
        )
    )


def application_items(session: Session, application: Application) -> list[ApplicationItem]:
    """The application's IDs and codes, in the order they were written."""
    return list(
        session.exec(
            select(ApplicationItem)
            .where(ApplicationItem.application_id == application.id)
            .order_by(col(ApplicationItem.id))
        )
    )


def locked(session: Session, application: Application) -> Application:
    """``application`` read again under a row lock (PostgreSQL; SQLite's writer lock
    serialises anyway). ``populate_existing``: a change committed another way since the caller
    read it (a decision, an apply) is seen, never overwritten."""
    query = (
        select(Application)
        .where(Application.id == application.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.exec(query).one()


def find_application(session: Session, receipt_no: str) -> Application:
    key = parse_receipt_no(receipt_no)
    application = (
        session.exec(select(Application).where(Application.receipt_no == key)).first()
        if key
        else None
    )
    if application is None:
        raise NotFoundError(f"no application with receipt number {receipt_no!r}")
    return application


def user_id_counts() -> Subquery:
    """How many user IDs each application names: ``(application_id, n)``, to join on."""
    item = SQLModel.metadata.tables[ApplicationItem.__tablename__].c
    return (
        core_select(item.application_id, func.count().label("n"))
        .where(item.kind == "user_id")
        .group_by(item.application_id)
        .subquery()
    )


def application_summary(
    session: Session, application: Application, zone: tzinfo | None = None
) -> dict[str, Any]:
    """The application for the CLI (JSON-ready); times in ``zone`` when given, else UTC."""
    return application_summaries(session, [application], zone)[0]


# Applications whose items and events one query reads (bound parameters stay far below
# SQLite's limit of 32,766).
_SUMMARY_CHUNK = 500


def application_summaries(
    session: Session, applications: Sequence[Application], zone: tzinfo | None = None
) -> list[dict[str, Any]]:
    """:func:`application_summary` of each, with two queries per 500 applications instead of
    two per application: `mailbot list` of 100 under review 350 -> 11 ms (bench/scale.py)."""

    def when(moment: datetime | None) -> str | None:
        if moment is None:
            return None
        aware = as_utc(moment)
        return (aware.astimezone(zone) if zone is not None else aware).isoformat()

    items: dict[int, list[ApplicationItem]] = defaultdict(list)
    events: dict[int, list[AuditEvent]] = defaultdict(list)
    ids = [a.id for a in applications if a.id is not None]
    for start in range(0, len(ids), _SUMMARY_CHUNK):
        chunk = ids[start : start + _SUMMARY_CHUNK]
        for item in session.exec(
            select(ApplicationItem)
            .where(col(ApplicationItem.application_id).in_(chunk))
            .order_by(col(ApplicationItem.id))
        ):
            items[item.application_id].append(item)
        for event in session.exec(
            select(AuditEvent)
            .where(col(AuditEvent.application_id).in_(chunk))
            .order_by(col(AuditEvent.id))
        ):
            assert event.application_id is not None  # selected by it
            events[event.application_id].append(event)
    return [
        _summary(application, items[application.id or 0], events[application.id or 0], when)
        for application in applications
    ]


def _summary(
    application: Application,
    items: list[ApplicationItem],
    events: list[AuditEvent],
    when: Callable[[datetime | None], str | None],
) -> dict[str, Any]:
    return {
        "receipt_no": application.receipt_no,
        "status": application.status,
        "status_ja": STATUS_JA.get(application.status, application.status),
        "office_code": application.office_code,
        "user_ids": [item.key for item in items if item.kind == "user_id"],
        "user_codes": [item.key for item in items if item.kind == "user_code"],
        "shared_codes_pending": application.shared_codes_pending,
        "desired_start_date": application.desired_start_date.isoformat(),
        "proposed_start_date": application.proposed_start_date.isoformat(),
        "start_date": application.start_date.isoformat() if application.start_date else None,
        "applicant": {
            "name": application.applicant_name,
            "email": application.applicant_email,
            "phone": application.applicant_phone,
        },
        "manager": {"name": application.manager_name, "email": application.manager_email},
        "reason": application.reason,
        "remarks": application.remarks,
        "received_at": when(application.received_at),
        "received_on": application.received_on.isoformat(),
        "decision": {
            "by": application.decided_by,
            "at": when(application.decided_at),
            "reason": application.decision_reason,
        },
        "events": [
            {"at": when(e.at), "event": e.event, "actor": e.actor, "detail": e.detail}
            for e in events
        ],
    }


def list_applications(session: Session, status: str | None = None) -> list[Application]:
    query = select(Application).order_by(col(Application.id))
    if status:
        query = query.where(Application.status == status)
    return list(session.exec(query))
