"""Rate limits of the console's login: how often one bucket was used in the current clock hour.

A bucket is ``ask:ADDRESS`` (links asked for) or ``code:ADDRESS`` (codes typed). Counting is one
atomic upsert in the caller's transaction, so two requests racing cannot both take the last
allowance, and an outsider's address is counted exactly like a staff member's (the answer must
not tell them apart).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col

from db.dialect import upsert
from db.models import ConsoleRateCount

_TABLE = ConsoleRateCount.__table__  # type: ignore[attr-defined]
KEPT = timedelta(days=1)  # older counts are deleted when a new hour's count is taken


def clock_hour(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def take(session: Session, bucket: str, limit: int, now: datetime) -> bool:
    """Count one use of ``bucket`` in ``now``'s hour; True while the count is at most ``limit``."""
    hour = clock_hour(now)
    statement = (
        upsert(session, _TABLE)
        .values(bucket=bucket[:400], hour=hour, count=1)
        .on_conflict_do_update(
            index_elements=["bucket", "hour"], set_={"count": _TABLE.c.count + 1}
        )
        .returning(_TABLE.c.count)
    )
    count = int(session.execute(statement).scalar_one())
    if count == 1:  # the first use of this bucket this hour: a cheap moment to forget old ones
        session.execute(delete(ConsoleRateCount).where(col(ConsoleRateCount.hour) < hour - KEPT))
    return count <= limit
