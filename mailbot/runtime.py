"""What a running mailbot command holds: its settings and its database engine, built once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property

from sqlalchemy import Engine
from sqlmodel import Session

from db.engine import make_engine, session_scope
from mailbot.calendar import BusinessCalendar
from mailbot.clock import utc_now
from mailbot.config import Settings
from mailbot.file_access import check_database_access


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        check_database_access(self.settings.database_url)
        return make_engine(self.settings.database_url)

    @cached_property
    def calendar(self) -> BusinessCalendar:
        return BusinessCalendar()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.engine) as session:
            yield session

    def close(self) -> None:
        if "engine" in self.__dict__:  # only if a command actually opened the database
            self.engine.dispose()

    def today(self, now: datetime | None = None) -> date:
        """The Japanese calendar date (MAILBOT_TIMEZONE) at ``now`` (default: the clock)."""
        moment = now if now is not None else utc_now()
        return moment.astimezone(self.settings.zone).date()
