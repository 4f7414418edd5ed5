"""An application as staff see it: the original message, the parsed fields, the IDs and codes,
and one timeline of everything that happened to it: every audit event (decisions by reply, by
the web and by the CLI, with who and from which message) and every notice with its delivery
state, in the order they happened."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from db.models import (
    Application,
    ApplicationItem,
    AuditEvent,
    InboundMessage,
    OutboundMessage,
)
from mailbot.applications import find_application
from mailbot.clock import as_utc
from mailbot.mime import ParsedMail, UnreadableMail, parse_mail

# What each audit event is called on the timeline (Japanese, English).
EVENT_LABELS: dict[str, tuple[str, str]] = {
    "received": ("受付", "received"),
    "approval": ("承認", "approval"),
    "review_finished": ("審査終了", "review finished"),
    "start_date_changed": ("利用開始日の変更", "start date changed"),
    "start_date_not_registration_date": (
        "利用開始日がシステム登録日ではありません",
        "start date is no registration date",
    ),
    "withdrawn": ("取下げ", "withdrawn"),
    "cancelled": ("承認の取消", "approval cancelled"),
    "applied": ("適用", "applied"),
    "reply_refused": ("返信を拒否", "reply refused"),
    "follow_up_received": ("申込者からの返信", "reply from the applicant"),
    "raw_mail_removed": ("原本の削除（保存期間経過）", "raw mail removed (retention)"),
}
NOTICE_STATES: dict[str, tuple[str, str]] = {
    "pending": ("送信待ち", "waiting"),
    "sent": ("送信済み", "sent"),
    "failed": ("送信失敗", "failed"),
    "bounced": ("不達", "bounced"),
}
VIA_LABELS = {
    "mail": "メール返信",
    "web": "管理画面",
    "cli": "コマンド",
    "scheduler": "スケジューラ",
}


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str  # "event" or "notice"
    label_ja: str
    label_en: str
    actor: str = ""
    via: str = ""
    inbound_id: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # notices
    outbound_id: int | None = None
    recipient: str = ""
    subject: str = ""
    state: str = ""
    sent_at: datetime | None = None
    attempts: int = 0
    last_error: str = ""


@dataclass(frozen=True)
class Original:
    """The message an application came from (None fields once retention removed it)."""

    inbound_id: int
    received_at: datetime
    envelope_from: str | None
    mail: ParsedMail | None
    headers: list[tuple[str, str]]
    removed: bool
    unreadable: str = ""


@dataclass(frozen=True)
class Detail:
    application: Application
    user_ids: tuple[str, ...]
    user_codes: tuple[str, ...]
    approvers: tuple[str, ...]  # at the current version
    timeline: list[Entry]
    original: Original | None


def load_detail(session: Session, receipt_no: str, max_attachment_bytes: int) -> Detail:
    application = find_application(session, receipt_no)
    assert application.id is not None
    items = list(
        session.exec(
            select(ApplicationItem)
            .where(ApplicationItem.application_id == application.id)
            .order_by(col(ApplicationItem.id))
        )
    )
    events = list(
        session.exec(
            select(AuditEvent)
            .where(AuditEvent.application_id == application.id)
            .order_by(col(AuditEvent.at), col(AuditEvent.id))
        )
    )
    notices = session.execute(
        sa_select(
            col(OutboundMessage.id),
            col(OutboundMessage.created_at),
            col(OutboundMessage.kind),
            col(OutboundMessage.recipient),
            col(OutboundMessage.subject),
            col(OutboundMessage.status),
            col(OutboundMessage.sent_at),
            col(OutboundMessage.attempts),
            col(OutboundMessage.last_error),
        )
        .where(col(OutboundMessage.application_id) == application.id)
        .order_by(col(OutboundMessage.id))
    ).all()
    timeline = [_event_entry(e) for e in events] + [_notice_entry(n) for n in notices]
    # Stable: an event comes before the notices it caused (same transaction, same time).
    timeline.sort(key=lambda entry: (as_utc(entry.at), entry.kind != "event"))
    approvers = tuple(
        sorted(
            {
                e.actor
                for e in events
                if e.event == "approval" and e.detail.get("version") == application.version
            }
        )
    )
    original = (
        load_original(session, application.inbound_id, max_attachment_bytes)
        if application.inbound_id is not None
        else None
    )
    return Detail(
        application,
        tuple(i.key for i in items if i.kind == "user_id"),
        tuple(i.key for i in items if i.kind == "user_code"),
        approvers,
        timeline,
        original,
    )


def _event_entry(event: AuditEvent) -> Entry:
    ja, en = EVENT_LABELS.get(event.event, (event.event, event.event))
    detail = dict(event.detail or {})
    if event.event == "review_finished":
        status = detail.get("status")
        ja, en = ("承認", "approved") if status == "approved" else ("却下", "rejected")
    via = str(detail.get("via") or "")
    return Entry(
        at=event.at,
        kind="event",
        label_ja=ja,
        label_en=en,
        actor=event.actor,
        via=VIA_LABELS.get(via, via),
        inbound_id=event.inbound_id,
        detail={
            key: ", ".join(map(str, value)) if isinstance(value, list) else value
            for key, value in detail.items()
            if key not in ("via", "status") and value not in (None, "", [])
        },
    )


def _notice_entry(row: Any) -> Entry:
    state_ja, state_en = NOTICE_STATES.get(row[5], (row[5], row[5]))
    return Entry(
        at=row[1],
        kind="notice",
        label_ja="通知",
        label_en=f"notice ({row[2]})",
        outbound_id=row[0],
        recipient=row[3],
        subject=row[4] or "",
        state=f"{state_ja} / {state_en}",
        sent_at=row[6],
        attempts=row[7],
        last_error=(row[8] or "")[:300],
    )


def load_original(session: Session, inbound_id: int, max_attachment_bytes: int) -> Original | None:
    inbound = session.get(InboundMessage, inbound_id)
    if inbound is None:
        return None
    raw = bytes(inbound.raw or b"")
    if not raw:  # retention removed it: the kept headers only
        kept = [(name.title(), value) for name, value in (inbound.headers or {}).items()]
        return Original(inbound_id, inbound.received_at, inbound.envelope_from, None, kept, True)
    try:
        mail = parse_mail(raw, max_attachment_bytes=max_attachment_bytes)
    except UnreadableMail as exc:
        return Original(
            inbound_id, inbound.received_at, inbound.envelope_from, None, [], False, str(exc)
        )
    headers = [
        (name, mail.header(name) or "")
        for name in ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID")
        if mail.header(name)
    ]
    return Original(inbound_id, inbound.received_at, inbound.envelope_from, mail, headers, False)
