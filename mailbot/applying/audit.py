"""The ``applied`` audit events of a batch, written set-based, read back as the report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Subquery, false, insert, literal, null, select
from sqlmodel import Session

from db.dialect import JsonSql
from db.models import ACTIVE
from mailbot.applying.batch import (
    APPLICATION,
    AUDIT,
    ITEM,
    USER_CODE,
    USER_ID,
    Batch,
    code_goes,
)

SYSTEM_ACTOR = "mailbot"


def audit_applied(
    session: Session, batch: Batch, already: list[str], now: datetime, via: str
) -> dict[int, dict[str, Any]]:
    """One ``applied`` event per application, ``INSERT … SELECT``; application id → detail.

    The detail lists the IDs abolished now and those found abolished already, in request
    order, and the codes the application touches that go now or stay (rule 4), in code order.
    It is read back (``RETURNING``) as the report, and the applied notice is rendered from
    it later (mailbot.notify), so all three say the same.
    """
    as_json = JsonSql(session)
    a = APPLICATION.c
    id_lists = _id_lists(as_json, batch, already)
    code_lists = _code_lists(as_json, batch)
    detail = as_json.object(
        start_date=a.start_date,
        user_ids=as_json.embed(id_lists.c.user_ids),
        already_abolished=as_json.embed(id_lists.c.already_abolished),
        user_codes=as_json.embed(code_lists.c.user_codes),
        codes_still_active=as_json.embed(code_lists.c.codes_still_active),
        via=literal(via, String),
    )
    rows = (
        select(
            literal(now, AUDIT.c.at.type),
            a.id,
            literal("applied", String),
            literal(SYSTEM_ACTOR, String),
            null(),
            detail,
        )
        .select_from(APPLICATION)
        .outerjoin(id_lists, id_lists.c.application_id == a.id)
        .outerjoin(code_lists, code_lists.c.application_id == a.id)
        .where(batch.holds(a.id))
    )
    e = AUDIT.c
    statement = (
        insert(AUDIT)
        .from_select([e.at, e.application_id, e.event, e.actor, e.inbound_id, e.detail], rows)
        .returning(e.application_id, e.detail)
    )
    return {application_id: detail for application_id, detail in session.execute(statement)}


def _id_lists(as_json: JsonSql, batch: Batch, already: list[str]) -> Subquery:
    """Per application: its user IDs abolished now, and those abolished before, in order."""
    i = ITEM.c
    items = (
        select(i.application_id, i.key, i.id)
        .where(i.kind == "user_id", batch.holds(i.application_id))
        .order_by(i.application_id, i.id)
        .subquery()
    )
    was_abolished = items.c.key.in_(already) if already else false()
    return (
        select(
            items.c.application_id,
            as_json.array(items.c.key, items.c.id, ~was_abolished).label("user_ids"),
            as_json.array(items.c.key, items.c.id, was_abolished).label("already_abolished"),
        )
        .group_by(items.c.application_id)
        .subquery()
    )


def _code_lists(as_json: JsonSql, batch: Batch) -> Subquery:
    """Per application: the codes it touches that go now, and the active ones that stay."""
    i, u, c = ITEM.c, USER_ID.c, USER_CODE.c
    touched = (
        select(i.application_id, u.user_code.label("code"))
        .join(USER_ID, u.user_id == i.key)
        .where(i.kind == "user_id", batch.holds(i.application_id))
        .union(
            select(i.application_id, i.key).where(
                i.kind == "user_code", batch.holds(i.application_id)
            )
        )
        .subquery()
    )
    codes = (
        select(touched.c.application_id, c.code, code_goes().label("goes"))
        .join(USER_CODE, c.code == touched.c.code)
        .where(c.status == ACTIVE)
        .order_by(touched.c.application_id, c.code)
        .subquery()
    )
    return (
        select(
            codes.c.application_id,
            as_json.array(codes.c.code, codes.c.code, codes.c.goes).label("user_codes"),
            as_json.array(codes.c.code, codes.c.code, ~codes.c.goes).label("codes_still_active"),
        )
        .group_by(codes.c.application_id)
        .subquery()
    )
