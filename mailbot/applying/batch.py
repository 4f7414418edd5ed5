"""What every statement of a batch shares: the claimed applications, the Core tables the
set-based statements use (no ORM objects), how a statement names the batch, and when a code
goes (rules 3 and 4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import ColumnElement, Integer, Table, and_, exists
from sqlmodel import Session, SQLModel

from db.dialect import dialect_of, in_one_parameter, is_postgresql
from db.models import (
    ABOLISHED,
    ACTIVE,
    Application,
    ApplicationItem,
    AuditEvent,
    UserCode,
    UserId,
)

_TABLES = SQLModel.metadata.tables
APPLICATION: Table = _TABLES[Application.__tablename__]
ITEM: Table = _TABLES[ApplicationItem.__tablename__]
USER_ID: Table = _TABLES[UserId.__tablename__]
USER_CODE: Table = _TABLES[UserCode.__tablename__]
AUDIT: Table = _TABLES[AuditEvent.__tablename__]


@dataclass(frozen=True)
class Claimed:
    """An approved, due application claimed (locked) for this transaction."""

    id: int
    receipt_no: str
    office_code: str
    start_date: date


class Batch:
    """The claimed applications' ids, and how a statement names them: one bound parameter.

    ``IN (…)`` would bind one parameter per application, several times per statement; with
    thousands of applications per batch that alone costs more than the statements' work
    (and SQLite caps the number of parameters): see :func:`db.dialect.in_one_parameter`.
    """

    def __init__(self, session: Session, ids: list[int]) -> None:
        self.ids = ids
        self.dialect = dialect_of(session)
        self.postgres = is_postgresql(session)

    def __len__(self) -> int:
        return len(self.ids)

    def holds(self, column: ColumnElement[int]) -> ColumnElement[bool]:
        return in_one_parameter(self.dialect, column, self.ids, Integer())


def code_goes() -> ColumnElement[bool]:
    """True for an active code none of whose IDs, in any office, is anything but abolished.

    Rule 3 (a code goes with its last ID) and rule 4 (a shared code goes only when every
    sharing office's IDs are gone) are this one predicate, evaluated once the batch's IDs are
    abolished: by the audit (what the report says) and by the code UPDATE (what happens).
    """
    u, c = USER_ID.c, USER_CODE.c
    alive = exists().where(u.user_code == c.code, u.status != ABOLISHED)
    return and_(c.status == ACTIVE, ~alive)
