"""What every part of the review works with: the settings, the calendar and "now"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from mailbot.calendar import BusinessCalendar
from mailbot.config import Settings


@dataclass(frozen=True)
class ReviewContext:
    settings: Settings
    calendar: BusinessCalendar
    now: datetime

    @property
    def today(self) -> date:
        return self.now.astimezone(self.settings.zone).date()
