"""What a user ID may still do (rule 8), from the registry's state on a given date."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlmodel import Session

from db.models import ABOLISHED, UserCode, UserId
from mailbot.errors import NotFoundError
from mailbot.normalize import InvalidUserId, normalise_user_id
from mailbot.registry import user_id_summary
from mailbot.rules import Operation, can_perform

OPERATIONS: tuple[Operation, ...] = ("business", "management_statistics", "package_software")


def _load(session: Session, user_id: str) -> tuple[UserId, UserCode | None]:
    try:
        key = normalise_user_id(user_id)
    except InvalidUserId:
        raise NotFoundError(f"{user_id!r} is not a user ID (8 letters or digits)") from None
    user = session.get(UserId, key)
    if user is None:
        raise NotFoundError(f"user ID {key} is not in the registry")
    return user, session.get(UserCode, user.user_code)


def _code_abolished(code: UserCode | None, today: date) -> bool:
    return (
        code is not None
        and code.status == ABOLISHED
        and (code.abolished_on is None or code.abolished_on <= today)
    )


def id_state(session: Session, user_id: str, today: date) -> dict[str, Any]:
    user, code = _load(session, user_id)
    allowed = {
        op: can_perform(op, user.status, user.abolished_on, _code_abolished(code, today), today)[0]
        for op in OPERATIONS
    }
    return {
        **user_id_summary(user),
        "user_code_status": code.status if code else None,
        "as_of": today.isoformat(),
        "allowed": allowed,
    }


def may_perform(session: Session, user_id: str, operation: str, today: date) -> tuple[bool, str]:
    user, code = _load(session, user_id)
    return can_perform(
        operation, user.status, user.abolished_on, _code_abolished(code, today), today
    )
