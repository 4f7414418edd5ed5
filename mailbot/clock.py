"""Time: the one clock and the one way a service waits.

Every service takes a :data:`Clock` (``utc_now`` unless a test fixes the time) and asks it for
"now" instead of reading the system clock itself, so that a test can run a day in a second.
Times are aware and in UTC; dates a person reads are taken in ``MAILBOT_TIMEZONE``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time, aware: SQLite hands back naive datetimes for the UTC values it stores."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def wait_any(*events: asyncio.Event, timeout: float) -> None:
    """Return when any of ``events`` is set, or after ``timeout`` seconds, whichever is first."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
