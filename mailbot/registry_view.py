"""The registry as the rules see it: plain data :mod:`mailbot.registry_queries` reads for one
request (offices with their contacts, user IDs with the open application holding each), so
that :mod:`mailbot.rules` and :mod:`mailbot.who_may_apply` never read the database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

from db.models import ACTIVE
from mailbot.normalize import USER_CODE_LENGTH

UserIdStatus = Literal["active", "abolished"]


@dataclass(frozen=True)
class OfficeInfo:
    code: str
    company: str
    office: str
    department: str
    contact_emails: frozenset[str]


@dataclass(frozen=True)
class UserIdInfo:
    """One registered user ID. ``open_receipt_no``: another open application holding it."""

    user_id: str
    office_code: str
    status: UserIdStatus
    abolished_on: date | None = None
    open_receipt_no: str | None = None

    @property
    def user_code(self) -> str:
        return self.user_id[:USER_CODE_LENGTH]

    @property
    def is_active(self) -> bool:
        return self.status == ACTIVE


@dataclass(frozen=True)
class RegistryView:
    """The registry as the rules need it: offices by code, user IDs by (normalised) ID."""

    offices: Mapping[str, OfficeInfo]
    user_ids: Mapping[str, UserIdInfo]

    def ids_of_code(self, user_code: str) -> list[UserIdInfo]:
        return [info for info in self.user_ids.values() if info.user_code == user_code]
