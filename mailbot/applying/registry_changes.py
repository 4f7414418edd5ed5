"""What applying a batch changes in the registry and the applications, set-based: the IDs and
then the codes abolished, the applications applied, the code items of codes that stay active
let go (docs/domain.md rules 3, 4 and 8)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import CompoundSelect, CursorResult, String, func, select, update
from sqlmodel import Session

from db.dialect import in_one_parameter
from db.models import ABOLISHED, ACTIVE, APPLIED, APPROVED
from mailbot.applying.batch import (
    APPLICATION,
    ITEM,
    USER_CODE,
    USER_ID,
    Batch,
    Claimed,
    code_goes,
)
from mailbot.applying.report import ApplyError


def already_abolished(session: Session, batch: Batch) -> list[str]:
    """Items whose ID is not active any more (abolished some other way): left as they are.

    Read before the IDs are abolished, because afterwards nothing tells them apart. Almost
    always empty (rule 2 refuses abolished IDs at intake), so this costs one pass, no rows.
    """
    i, u = ITEM.c, USER_ID.c
    query = (
        select(u.user_id)
        .join(ITEM, i.key == u.user_id)
        .where(i.kind == "user_id", batch.holds(i.application_id), u.status != ACTIVE)
    )
    return list(session.execute(query).scalars())


def abolish_user_ids(session: Session, claimed: Sequence[Claimed]) -> None:
    """IDs → abolished, abolished on their application's start date.

    One UPDATE per start date in the batch (normally one). ``status = 'active'`` in the
    condition is what makes a second run, or an ID abolished some other way, a no-op.
    """
    by_start: dict[date, list[int]] = defaultdict(list)
    for one in claimed:
        by_start[one.start_date].append(one.id)
    i, u = ITEM.c, USER_ID.c
    for start, ids in sorted(by_start.items()):
        part = Batch(session, ids)
        wanted = select(i.key).where(i.kind == "user_id", part.holds(i.application_id))
        session.execute(
            update(USER_ID)
            .where(u.status == ACTIVE, u.user_id.in_(wanted))
            .values(status=ABOLISHED, abolished_on=start)
        )


def _touched_codes(batch: Batch) -> CompoundSelect[str]:
    """The user codes these applications touch: their IDs' codes and their code items."""
    i, u = ITEM.c, USER_ID.c
    return (
        select(u.user_code)
        .join(ITEM, i.key == u.user_id)
        .where(i.kind == "user_id", batch.holds(i.application_id))
        .union(select(i.key).where(i.kind == "user_code", batch.holds(i.application_id)))
    )


def lock_codes(session: Session, batch: Batch) -> None:
    """Lock the rows of the codes this batch touches, in code order, before changing anything.

    Two processes applying the last IDs of one shared code at the same moment would each
    see the other's IDs still active (uncommitted) and neither would abolish the code. With
    the code rows locked first, the second waits for the first to commit and then, its next
    statements seeing that commit, abolishes the code. Code order: no deadlock between
    batches. (PostgreSQL; SQLite's single writer already serialises the batches.)
    """
    c = USER_CODE.c
    session.execute(
        select(c.code).where(c.code.in_(_touched_codes(batch))).order_by(c.code).with_for_update()
    ).all()


def abolish_completed_codes(session: Session, codes: set[str]) -> set[str]:
    """The codes the audit found going (:func:`code_goes`) → abolished; those abolished.

    Given by the audit rather than worked out again from the items: the same predicate, one
    statement later in the same transaction, and checked again here so that a code can only
    go when it must. The code is abolished on the latest of its IDs' dates: the start date of
    the application that abolished its last ID.
    """
    if not codes:
        return set()
    u, c = USER_ID.c, USER_CODE.c
    last_day = select(func.max(u.abolished_on)).where(u.user_code == c.code).scalar_subquery()
    statement = (
        update(USER_CODE)
        .where(
            in_one_parameter(session, c.code, sorted(codes), String()),
            code_goes(),
        )
        .values(status=ABOLISHED, abolished_on=last_day)
        .returning(c.code)
    )
    return set(session.execute(statement).scalars())


def finish_applications(session: Session, batch: Batch, now: datetime) -> None:
    a = APPLICATION.c
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(APPLICATION)
        .where(batch.holds(a.id), a.status == APPROVED)
        .values(status=APPLIED, version=a.version + 1, updated_at=now)
    )
    changed = result.rowcount
    if changed != len(batch):
        # Claimed rows cannot change under us (row locks / the single SQLite writer); if they
        # did, roll everything back rather than apply half a batch.
        raise ApplyError(f"{len(batch) - changed} claimed application(s) changed meanwhile")
    _let_go_of_active_codes(session, batch)


def _let_go_of_active_codes(session: Session, batch: Batch) -> None:
    """Code items of codes that stay active stop holding them; every other item keeps holding.

    A shared code that stays active will be named by another office's application (rule 4),
    so its item must let go. An abolished ID or code is never named again (rules 2 and 3
    refuse it first), so the items holding those keep holding them: no need to rewrite ten
    items per application, which is much of what makes a big start date cheap (see
    ApplicationItem).
    """
    i, c = ITEM.c, USER_CODE.c
    still_active = select(c.code).where(c.status == ACTIVE)
    session.execute(
        update(ITEM)
        .where(batch.holds(i.application_id), i.kind == "user_code", i.key.in_(still_active))
        .values(open=False)
    )
