"""Facts about the queues that live in the database, the same whichever process reads them:
for ``/healthz`` (is the worker draining? are notices going out?) and ``/metrics``.

One short read transaction of grouped counts over indexed columns; no row is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlmodel import col

from db.engine import session_scope
from db.models import (
    ABOLISHED,
    INBOUND_PENDING,
    INBOUND_QUARANTINED,
    OUTBOUND_FAILED,
    OUTBOUND_PENDING,
    Application,
    InboundMessage,
    OutboundMessage,
    ReceiptCounter,
    UserId,
)
from mailbot.clock import as_utc


@dataclass(frozen=True)
class QueueFacts:
    inbound: Mapping[str, int] = field(default_factory=dict)  # messages by status
    oldest_waiting: datetime | None = None  # the oldest pending message's arrival
    quarantined_bytes: int = 0
    raw_removed: int = 0  # messages whose raw bytes retention removed
    outbox: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (status, kind) → rows
    oldest_unsent: datetime | None = None  # the oldest pending notice, since (re)queued
    applications: Mapping[str, int] = field(default_factory=dict)  # by status
    receipts: Mapping[int, int] = field(default_factory=dict)  # year → receipt numbers issued
    abolished_ids: int = 0  # user IDs abolished (applied changes)

    def waiting_seconds(self, now: datetime) -> float | None:
        return _age(self.oldest_waiting, now)

    def unsent_seconds(self, now: datetime) -> float | None:
        return _age(self.oldest_unsent, now)

    @property
    def quarantined(self) -> int:
        return self.inbound.get(INBOUND_QUARANTINED, 0)

    @property
    def pending(self) -> int:
        return self.inbound.get(INBOUND_PENDING, 0)

    def notices(self, status: str) -> int:
        return sum(count for (state, _), count in self.outbox.items() if state == status)

    def as_json(self, now: datetime) -> dict[str, Any]:
        return {
            "messages": self.pending,
            "oldest_seconds": _round(self.waiting_seconds(now)),
            "quarantined": self.quarantined,
            "notices": self.notices(OUTBOUND_PENDING),
            "oldest_notice_seconds": _round(self.unsent_seconds(now)),
            "failed_notices": self.notices(OUTBOUND_FAILED),
        }


def read_facts(engine: Engine) -> QueueFacts:
    """Blocking (run it on a thread from the event loop)."""
    m, o, a = InboundMessage, OutboundMessage, Application
    with session_scope(engine) as session:
        inbound = _pairs(
            session.execute(select(col(m.status), func.count()).group_by(col(m.status))).all()
        )
        oldest_waiting = session.execute(
            select(func.min(col(m.received_at))).where(col(m.status) == INBOUND_PENDING)
        ).scalar_one()
        quarantined_bytes = session.execute(
            select(func.coalesce(func.sum(col(m.size)), 0)).where(
                col(m.status) == INBOUND_QUARANTINED
            )
        ).scalar_one()
        raw_removed = session.execute(
            select(func.count()).where(col(m.raw_removed_at).is_not(None))
        ).scalar_one()
        outbox = {
            (status, kind): count
            for status, kind, count in session.execute(
                select(col(o.status), col(o.kind), func.count()).group_by(
                    col(o.status), col(o.kind)
                )
            )
        }
        oldest_unsent = session.execute(
            select(func.min(func.coalesce(col(o.requeued_at), col(o.created_at)))).where(
                col(o.status) == OUTBOUND_PENDING
            )
        ).scalar_one()
        applications = _pairs(
            session.execute(select(col(a.status), func.count()).group_by(col(a.status))).all()
        )
        receipts = _pairs(
            session.execute(select(col(ReceiptCounter.year), col(ReceiptCounter.issued))).all()
        )
        abolished = session.execute(
            select(func.count()).where(col(UserId.status) == ABOLISHED)
        ).scalar_one()
    return QueueFacts(
        inbound=inbound,
        oldest_waiting=_aware(oldest_waiting),
        quarantined_bytes=int(quarantined_bytes),
        raw_removed=int(raw_removed),
        outbox=outbox,
        oldest_unsent=_aware(oldest_unsent),
        applications=applications,
        receipts=receipts,
        abolished_ids=int(abolished),
    )


def _pairs(rows: Sequence[Any]) -> dict[Any, int]:
    return {key: int(count) for key, count in rows}


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite may hand back an aggregate of times as text
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return as_utc(value)


def _age(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else max(0.0, (now - moment).total_seconds())


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
