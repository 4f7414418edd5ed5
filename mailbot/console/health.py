"""The health panel: what ``/healthz`` knows (mailbot.web_health), for people, and a little more
from the database: the last message received, the last IMAP success, the outbox, the scheduler
and the next start date to apply."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from db.models import APPROVED, Application, InboundMessage
from mailbot.applying import run_time
from mailbot.config import Settings
from mailbot.monitor import Monitor


@dataclass(frozen=True)
class NextApply:
    start_date: Any
    at: datetime
    count: int


@dataclass(frozen=True)
class Panel:
    health: dict[str, Any]  # /healthz's body
    ok: bool
    last_received: datetime | None
    imap_last_success: datetime | None
    imap_state: str | None
    scheduler_state: str | None
    next_apply: NextApply | None


def database_part(session: Session, settings: Settings) -> tuple[datetime | None, NextApply | None]:
    last = session.exec(select(func.max(col(InboundMessage.received_at)))).one()
    first = session.exec(
        select(func.min(col(Application.start_date))).where(Application.status == APPROVED)
    ).one()
    upcoming = None
    if first is not None:
        count = int(
            session.exec(
                select(func.count())
                .select_from(Application)
                .where(Application.status == APPROVED)
                .where(Application.start_date == first)
            ).one()
        )
        upcoming = NextApply(first, run_time(first, settings.zone, settings.apply_time), count)
    if isinstance(last, str):  # SQLite may hand back an aggregate of times as text
        last = datetime.fromisoformat(last)
    return last, upcoming


def panel(
    health: dict[str, Any],
    ok: bool,
    monitor: Monitor,
    last_received: datetime | None,
    next_apply: NextApply | None,
) -> Panel:
    imap = monitor.parts.get("imap")
    scheduler = monitor.parts.get("scheduler")
    return Panel(
        health=health,
        ok=ok,
        last_received=last_received,
        imap_last_success=imap.last_success if imap else None,
        imap_state=imap.current if imap else None,
        scheduler_state=scheduler.current if scheduler else None,
        next_apply=next_apply,
    )
