"""The notice catalogue: every kind of mail mailbot sends, in one place.

For each kind: the outbox ``kind`` it is stored as, its template (under
``mailbot/templates/mail/``: ``applicant/`` for whoever writes in, ``staff/`` for the review
team), its subject (formatted with the notice's values; the subject prefix is added when it is
composed), its audience, and whether it counts against the sender's daily reply cap
(mailbot.reply_limits). What each says, and when it goes, is in docs/domain.md (the notices).

:func:`dedupe_key` builds every outbox dedupe key, in Python and, for the notices applying
queues with ``INSERT … SELECT``, in SQL: a key names the cause (an application, an inbound
message, a day), the notice and the recipient, so processing one cause twice never mails
anyone twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, overload

from sqlalchemy import ColumnElement


class Audience(StrEnum):
    APPLICANT = "applicant"  # applicants, managers, contacts, and anyone else who writes in
    STAFF = "staff"  # the review team


@dataclass(frozen=True)
class Notice:
    kind: str  # the outbox row's kind
    template: str  # relative to mailbot/templates/mail/
    subject: str  # a format string over the notice's values
    audience: Audience
    # An automatic reply to a sender (or a forward of what they wrote): counted per sender
    # per day, never to the null sender or mailbot's own addresses (mailbot.reply_limits).
    capped: bool
    # The dedupe key's middle part when it is not the kind ("": none, the cause names it).
    key_event: str | None = None

    def subject_for(self, values: Mapping[str, Any]) -> str:
        return self.subject.format_map(values)

    @property
    def event(self) -> str:
        return self.kind if self.key_event is None else self.key_event


# --- to applicants and managers, about their application (not capped) --------------------------

RECEIPT_COMPLETE = Notice(
    "receipt_complete",
    "applicant/receipt_complete.txt.j2",
    "利用申込受付完了のお知らせ（{receipt_no}）",
    Audience.APPLICANT,
    capped=False,
)
CONFIRMATION_COMPLETE = Notice(
    "confirmation_complete",
    "applicant/confirmation_complete.txt.j2",
    "利用申込確認完了のお知らせ",
    Audience.APPLICANT,
    capped=False,
)
REJECTION = Notice(
    "rejection",
    "applicant/rejection.txt.j2",
    "利用申込審査結果のお知らせ（{receipt_no}）",
    Audience.APPLICANT,
    capped=False,
)
WITHDRAWN = Notice(
    "withdrawn",
    "applicant/withdrawn.txt.j2",
    "利用申込取下げのお知らせ（{receipt_no}）",
    Audience.APPLICANT,
    capped=False,
)
CANCELLED = Notice(
    "cancelled",
    "applicant/cancelled.txt.j2",
    "利用申込取消のお知らせ（{receipt_no}）",
    Audience.APPLICANT,
    capped=False,
)
# Queued as an intent by applying (INSERT … SELECT) and rendered when the outbox claims it.
APPLIED = Notice(
    "applied",
    "applicant/applied.txt.j2",
    "利用者ID廃止の適用完了のお知らせ（{receipt_no}）",
    Audience.APPLICANT,
    capped=False,
)
APPLIED_KIND = APPLIED.kind  # also the audit event whose facts the notice tells

# --- replies to whoever wrote in (capped) -------------------------------------------------------

HELP = Notice(
    "help", "applicant/help.txt.j2", "利用者IDの廃止申込の方法", Audience.APPLICANT, capped=True
)
# Help for an outsider: a short text, the same kind and subject.
HELP_OUTSIDER = Notice(
    "help",
    "applicant/help_outsider.txt.j2",
    "利用者IDの廃止申込の方法",
    Audience.APPLICANT,
    capped=True,
)
REFUSAL = Notice(
    "refusal",
    "applicant/refusal.txt.j2",
    "お申込みを受け付けできませんでした",
    Audience.APPLICANT,
    capped=True,
)
REQUEST_PROBLEMS = Notice(
    "request_problems",
    "applicant/request_problems.txt.j2",
    "利用者ID廃止申込を受け付けできませんでした（要修正）",
    Audience.APPLICANT,
    capped=True,
)
UNREADABLE = Notice(
    "unreadable",
    "applicant/unreadable.txt.j2",
    "メールを読み取れませんでした",
    Audience.APPLICANT,
    capped=True,
)
CONTRACT = Notice(
    "contract", "applicant/contract.txt.j2", "契約内容のお知らせ", Audience.APPLICANT, capped=True
)
WITHDRAWAL_TOO_LATE = Notice(
    "withdrawal_too_late",
    "applicant/withdrawal_too_late.txt.j2",
    "取下げのご依頼について（{receipt_no}）",
    Audience.APPLICANT,
    capped=True,
)

# --- to the review team (not capped: staff are not robots to be protected from) ------------------

REVIEW_REQUEST = Notice(
    "review_request",
    "staff/review_request.txt.j2",
    "審査依頼：利用者ID廃止申込（{receipt_no}）",
    Audience.STAFF,
    capped=False,
)
APPROVED_STAFF = Notice(
    "approved_staff",
    "staff/approved.txt.j2",
    "承認が確定しました（{receipt_no}）",
    Audience.STAFF,
    capped=False,
)
WITHDRAWN_STAFF = Notice(
    "withdrawn_staff",
    "staff/withdrawn.txt.j2",
    "申込が取り下げられました（{receipt_no}）",
    Audience.STAFF,
    capped=False,
    key_event="withdrawn",
)
CANCELLED_STAFF = Notice(
    "cancelled_staff",
    "staff/cancelled.txt.j2",
    "承認が取り消されました（{receipt_no}）",
    Audience.STAFF,
    capped=False,
    key_event="cancelled",
)
REVIEW_REMINDER = Notice(
    "review_reminder",
    "staff/reminder.txt.j2",
    "審査待ちの申込が{count}件あります（受付から{min_business_days}営業日超）",
    Audience.STAFF,
    capped=False,
    key_event="",
)
# An applicant's reply forwarded to staff: counted against the applicant's daily allowance.
FOLLOW_UP_STAFF = Notice(
    "follow_up_staff",
    "staff/follow_up.txt.j2",
    "申込者からの返信（{receipt_no}）",
    Audience.STAFF,
    capped=True,
)

# --- answers to a staff member's reply (capped, like every reply to a sender) -------------------

ALREADY_DECIDED = Notice(
    "already_decided",
    "staff/already_decided.txt.j2",
    "この申込は審査済みです",
    Audience.STAFF,
    capped=True,
)
DECISION_UNREADABLE = Notice(
    "decision_unreadable",
    "staff/decision_unreadable.txt.j2",
    "回答を読み取れませんでした",
    Audience.STAFF,
    capped=True,
)
DECISION_REFUSED = Notice(
    "decision_refused",
    "staff/decision_refused.txt.j2",
    "回答を反映できませんでした",
    Audience.STAFF,
    capped=True,
)
REPLY_REFUSED = Notice(
    "reply_refused",
    "staff/reply_refused.txt.j2",
    "返信を受け付けできませんでした",
    Audience.STAFF,
    capped=True,
)
APPROVAL_RECORDED = Notice(
    "approval_recorded",
    "staff/approval_recorded.txt.j2",
    "承認を記録しました",
    Audience.STAFF,
    capped=True,
)
CANCEL_UNREADABLE = Notice(
    "cancel_unreadable",
    "staff/cancel_unreadable.txt.j2",
    "取消の指示を読み取れませんでした",
    Audience.STAFF,
    capped=True,
)
CANCEL_REFUSED = Notice(
    "cancel_refused",
    "staff/cancel_refused.txt.j2",
    "取り消しできませんでした",
    Audience.STAFF,
    capped=True,
)
CANCEL_RECORDED = Notice(
    "cancel_recorded",
    "staff/cancel_recorded.txt.j2",
    "承認を取り消しました",
    Audience.STAFF,
    capped=True,
)

# --- the staff console (mailbot.console) -------------------------------------------------------

# The login link and code a staff member asked for on /staff/login. Not capped: no mail of
# theirs is answered, and asking is rate-limited per address by the console itself.
CONSOLE_LOGIN = Notice(
    "console_login",
    "staff/console_login.txt.j2",
    "管理画面へのログイン",
    Audience.STAFF,
    capped=False,
)

CATALOGUE: tuple[Notice, ...] = (
    RECEIPT_COMPLETE,
    CONFIRMATION_COMPLETE,
    REJECTION,
    WITHDRAWN,
    CANCELLED,
    APPLIED,
    HELP,
    HELP_OUTSIDER,
    REFUSAL,
    REQUEST_PROBLEMS,
    UNREADABLE,
    CONTRACT,
    WITHDRAWAL_TOO_LATE,
    REVIEW_REQUEST,
    APPROVED_STAFF,
    WITHDRAWN_STAFF,
    CANCELLED_STAFF,
    REVIEW_REMINDER,
    FOLLOW_UP_STAFF,
    ALREADY_DECIDED,
    DECISION_UNREADABLE,
    DECISION_REFUSED,
    REPLY_REFUSED,
    APPROVAL_RECORDED,
    CANCEL_UNREADABLE,
    CANCEL_REFUSED,
    CANCEL_RECORDED,
    CONSOLE_LOGIN,
)


# --- dedupe keys -------------------------------------------------------------------------------


@overload
def application_cause(receipt_no: str) -> str: ...
@overload
def application_cause(receipt_no: ColumnElement[str]) -> ColumnElement[str]: ...
def application_cause(receipt_no: str | ColumnElement[str]) -> str | ColumnElement[str]:
    """The cause of a notice about an application (its receipt number; a column in SQL)."""
    return "application:" + receipt_no


def inbound_cause(inbound_id: int | None) -> str:
    """The cause of a reply to, or a forward of, one inbound message."""
    return f"inbound:{inbound_id}"


def day_cause(day: date) -> str:
    """The cause of what goes out once a day (the reminder digest)."""
    return f"reminder:{day.isoformat()}"


@overload
def dedupe_key(
    cause: str, notice: Notice, recipient: str, *, version: int | None = None
) -> str: ...
@overload
def dedupe_key(
    cause: ColumnElement[str],
    notice: Notice,
    recipient: ColumnElement[str],
    *,
    version: int | None = None,
) -> ColumnElement[str]: ...
def dedupe_key(
    cause: str | ColumnElement[str],
    notice: Notice,
    recipient: str | ColumnElement[str],
    *,
    version: int | None = None,
) -> str | ColumnElement[str]:
    """``CAUSE[:EVENT][:vVERSION]:RECIPIENT``: the outbox row's unique ``dedupe_key``.

    ``version`` is for a notice sent again when its application changes (a review request
    after a new start date, the approval notice). Given SQL expressions (applying's
    ``INSERT … SELECT``), the same key as a SQL string concatenation.
    """
    parts = (notice.event, f"v{version}" if version is not None else "")
    middle = "".join(f":{part}" for part in parts if part)
    return cause + f"{middle}:" + recipient
