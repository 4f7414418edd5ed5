"""What is still to apply: approved applications and when each will be applied
(``mailbot schedule list``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from db.models import APPROVED
from mailbot.applications import user_id_counts
from mailbot.applying.batch import APPLICATION
from mailbot.applying.when import MIDNIGHT, run_time


@dataclass(frozen=True)
class PendingApply:
    receipt_no: str
    office_code: str
    start_date: date
    run_at: datetime  # aware, in the configured zone
    user_ids: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "receipt_no": self.receipt_no,
            "office_code": self.office_code,
            "start_date": self.start_date.isoformat(),
            "run_at": self.run_at.isoformat(),
            "user_ids": self.user_ids,
        }


def pending_applies(
    session: Session, zone: tzinfo, apply_time: time = MIDNIGHT
) -> list[PendingApply]:
    """Approved applications not applied yet, earliest run time first (due ones included)."""
    a = APPLICATION.c
    counts = user_id_counts()
    rows = session.execute(
        select(a.receipt_no, a.office_code, a.start_date, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.application_id == a.id)
        .where(a.status == APPROVED, a.start_date.is_not(None))
        .order_by(a.start_date, a.id)
    )
    return [
        PendingApply(
            receipt_no=receipt_no,
            office_code=office_code,
            start_date=start,
            run_at=run_time(start, zone, apply_time),
            user_ids=int(n),
        )
        for receipt_no, office_code, start, n in rows
    ]
