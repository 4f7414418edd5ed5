"""Bulk work: several items, one action, a preview first and a result per item.

The actions are the single-item ones (mailbot.console.actions), so each item is decided,
reprocessed, discarded or retried exactly as on its own page, with its own audit event and
notices. Each item runs in a transaction of its own: a failure (decided meanwhile by reply, a
notice no longer failed) is reported on its row and the others go on; what succeeded stays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from db.engine import session_scope
from db.models import (
    INBOUND_QUARANTINED,
    OUTBOUND_FAILED,
    UNDER_REVIEW,
    Application,
    InboundMessage,
    OutboundMessage,
)
from mailbot.calendar import BusinessCalendar
from mailbot.config import Settings
from mailbot.console import actions
from mailbot.errors import BilingualError, MailbotError
from mailbot.review import ReviewContext

log = logging.getLogger("mailbot.console")

BULK_ACTIONS = {
    "approve": ("承認（提案された利用開始日で）", "approve with the proposed start date"),
    "reprocess": ("隔離メールを再処理", "reprocess quarantined messages"),
    "discard": ("隔離メールを破棄", "discard quarantined messages"),
    "retry": ("送信失敗の通知を再送", "retry failed notices"),
}
MAX_ITEMS = 1000
NOT_FOUND = "ありません / not found"


@dataclass(frozen=True)
class Item:
    """One item of a bulk action: its key (receipt number or id) and the version shown."""

    key: str
    version: int = 0

    @property
    def token(self) -> str:
        return f"{self.key}:{self.version}"


def items_from(values: list[str]) -> list[Item]:
    """``KEY:VERSION`` values of the form's checkboxes, each once, in order."""
    seen: dict[str, Item] = {}
    for value in values[:MAX_ITEMS]:
        key, _, version = value.partition(":")
        key = key.strip()[:32]
        if key and key not in seen:
            seen[key] = Item(key, int(version) if version.isdigit() else 0)
    return list(seen.values())


@dataclass(frozen=True)
class PreviewRow:
    item: Item
    title: str  # receipt number and office, or message / notice summary
    detail: str  # proposed start date, error, recipient
    problem: str = ""  # why it will not be done (already decided …), if known now


def preview(session: Session, action: str, items: list[Item]) -> list[PreviewRow]:
    if action == "approve":
        found = {
            a.receipt_no: a
            for a in session.exec(
                select(Application).where(col(Application.receipt_no).in_([i.key for i in items]))
            )
        }
        rows = []
        for item in items:
            application = found.get(item.key)
            if application is None:
                rows.append(PreviewRow(item, item.key, "", NOT_FOUND))
                continue
            problem = ""
            if application.status != UNDER_REVIEW:
                problem = f"審査済み（{application.status}, {application.decided_by}）"
            elif application.version != item.version:
                problem = "画面を開いた後に変更されました / changed since shown"
            rows.append(
                PreviewRow(
                    item,
                    " ".join(
                        (
                            application.receipt_no,
                            application.office_code,
                            application.applicant_name,
                        )
                    ),
                    f"利用開始日 {application.proposed_start_date.isoformat()}",
                    problem,
                )
            )
        return rows
    ids = [int(i.key) for i in items if i.key.isdigit()]
    if action in ("reprocess", "discard"):
        m = InboundMessage
        messages = select(m.id, m.status, m.envelope_from).where(col(m.id).in_(ids))
        return _numbered_rows(
            items,
            {
                row_id: (
                    sender or "<>",
                    status,
                    ""
                    if status == INBOUND_QUARANTINED
                    else "隔離中ではありません / not quarantined",
                )
                for row_id, status, sender in session.exec(messages)
            },
        )
    o = OutboundMessage
    notices = select(o.id, o.status, o.recipient, o.kind).where(col(o.id).in_(ids))
    return _numbered_rows(
        items,
        {
            row_id: (
                kind,
                recipient,
                "" if status == OUTBOUND_FAILED else "送信失敗ではありません / not failed",
            )
            for row_id, status, recipient, kind in session.exec(notices)
        },
    )


def _numbered_rows(
    items: list[Item], found: Mapping[int | None, tuple[str, str, str]]
) -> list[PreviewRow]:
    """The rows of items named by id: ``found`` holds each found id's title, detail and
    problem."""
    rows = []
    for item in items:
        number = int(item.key) if item.key.isdigit() else None
        if number is None or number not in found:
            rows.append(PreviewRow(item, f"#{item.key}", "", NOT_FOUND))
            continue
        title, detail, problem = found[number]
        rows.append(PreviewRow(item, f"#{item.key} {title}", detail, problem))
    return rows


@dataclass(frozen=True)
class Result:
    item: Item
    ok: bool
    result: str
    message_ja: str = ""
    message_en: str = ""


def run(
    engine: Engine,
    settings: Settings,
    calendar: BusinessCalendar,
    clock: Callable[[], datetime],
    *,
    action: str,
    items: list[Item],
    by: str,
    reason: str = "",
) -> list[Result]:
    """Each item in its own transaction; a refusal or failure is that item's result."""
    results = []
    for item in items:
        try:
            with session_scope(engine) as session:
                done = _one(session, settings, calendar, clock(), action, item, by, reason)
            results.append(Result(item, True, done.result, done.warning_ja, done.warning_en))
        except BilingualError as problem:
            results.append(Result(item, False, "refused", problem.message_ja, problem.message_en))
        except MailbotError as problem:
            results.append(Result(item, False, "refused", "", str(problem)))
        except Exception:  # one item's bug must not hide the others' results
            log.exception("console bulk %s: %s failed", action, item.key)
            results.append(
                Result(
                    item,
                    False,
                    "failed",
                    "処理中にエラーが発生しました（ログに記録されています）。",
                    "it failed with an error (in mailbot's log)",
                )
            )
    return results


def _one(
    session: Session,
    settings: Settings,
    calendar: BusinessCalendar,
    now: datetime,
    action: str,
    item: Item,
    by: str,
    reason: str,
) -> actions.Done:
    if action == "approve":
        ctx = ReviewContext(settings, calendar, now)
        return actions.approve(session, actions.Asked(ctx, by, item.key, item.version))
    number = int(item.key) if item.key.isdigit() else -1
    if action == "reprocess":
        return actions.reprocess(session, now, by=by, inbound_id=number)
    if action == "discard":
        return actions.discard(session, now, by=by, inbound_id=number, reason=reason)
    if action == "retry":
        return actions.retry_notice(session, now, by=by, outbound_id=number)
    raise MailbotError(f"unknown bulk action {action!r}")
