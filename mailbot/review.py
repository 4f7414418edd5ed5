"""Staff review by reply: review requests out, decisions in, and what a decision changes.

Approving by email is the most dangerous thing mailbot does: a forged approval abolishes a
company's IDs. So a reply acts only when every one of these holds, checked here and nowhere
else: the token in the reply address is ours, unused, unexpired and for review; the From
address is the staff member the token was issued to; the envelope sender, where the channel
has one, is that same mailbox (``mailbot.return_path``, unless
``MAILBOT_REVIEW_ENVELOPE_CHECK`` is false); that member is still active; the
application is still under review at the version the token was issued for; and, when
``MAILBOT_TRUSTED_AUTHSERV_ID`` is set, the trusted server saw DKIM or DMARC pass for the From
domain. A refused reply changes nothing, is written to the audit log with its reason, and gets
a short answer only when it comes from a staff address.

The CLI (``mailbot approve`` / ``reject``) goes through :func:`decide`, the same code and audit
as mail, with the operator's ``--by`` standing in for the token.

When an approval takes effect, each approver is told so in a mail whose reply address carries a
new token of purpose CANCEL (the review token is used up and bound to the version before the
approval). A ``取消 理由`` reply to it passes the same authority checks, with the approved
version in place of "under review", and then cancels through :mod:`mailbot.cancel`, the code
``mailbot cancel`` runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, NamedTuple

from sqlmodel import Session, col, select

from db.models import (
    APPROVED,
    CANCELLED,
    REJECTED,
    UNDER_REVIEW,
    WITHDRAWN,
    Application,
    ApplicationItem,
    AuditEvent,
    InboundMessage,
    Staff,
)
from db.queries import registry_view
from mailbot import notices
from mailbot.addresses import tagged_address
from mailbot.applications import STATUS_JA, finish
from mailbot.applying import is_due, run_time
from mailbot.authres import authenticated
from mailbot.calendar import BusinessCalendar
from mailbot.cancel import CancelError, cancel_application
from mailbot.config import Settings
from mailbot.dates import InvalidDate, parse_date
from mailbot.decisions import Action, Decision, read_decision
from mailbot.errors import BilingualError
from mailbot.follow_up import forward_to_staff
from mailbot.keys import Keyring, keyring, verifying_keyring
from mailbot.logs import add_log_fields
from mailbot.mime import ParsedMail
from mailbot.normalize import user_code_of
from mailbot.notify import (
    Reply,
    application_context,
    queue_staff_mail,
    send_reply,
    send_to_applicants,
    status_url,
)
from mailbot.outcome import Outcome
from mailbot.return_path import envelope_agrees
from mailbot.rules import RegistryView
from mailbot.schedule_table import registration_dates
from mailbot.staff import active_staff
from mailbot.tokens import (
    Purpose,
    TokenCheck,
    check_reply_token,
    issue_reply_token,
    signed_purpose,
    use_token,
)

# apply+t<token>@domain: a staff member's answer to a review request, or to the notice that
# their approval took effect (a CANCEL token); the token's signed purpose tells them apart.
REVIEW_TAG = "t"
NEARBY_DATES = 3

log = logging.getLogger("mailbot.review")


class DecisionError(BilingualError):
    """A decision that cannot be taken as given (bad date, missing reason, already decided)."""


@dataclass(frozen=True)
class ReviewContext:
    settings: Settings
    calendar: BusinessCalendar
    now: datetime

    @property
    def today(self) -> date:
        return self.now.astimezone(self.settings.zone).date()


# --- review requests ---------------------------------------------------------------------------


def send_review_requests(
    session: Session,
    settings: Settings,
    application: Application,
    *,
    view: RegistryView,
    now: datetime,
    skip: Staff | None = None,
) -> int:
    """Each active staff member gets their own review mail, with their own reply token."""
    assert application.id is not None
    reviewers = [m for m in active_staff(session) if skip is None or m.id != skip.id]
    if not reviewers:  # nobody to ask (yet): the reminder digest lists it once staff exist
        return 0
    context = {
        **application_context(session, application),
        **_registry_context(session, application, view),
        "status_url": status_url(session, settings, application.receipt_no, now),
        "approvals_required": settings.approvals_required,
    }
    sent = 0
    for member in reviewers:
        token = issue_reply_token(
            session,
            keyring(session, settings),
            purpose=Purpose.REVIEW,
            application_id=application.id,
            version=application.version,
            staff_id=member.id,
            now=now,
            lifetime=timedelta(days=settings.review_token_days),
        )
        sent += queue_staff_mail(
            session,
            settings,
            member,
            notices.REVIEW_REQUEST,
            context,
            cause=notices.application_cause(application.receipt_no),
            version=application.version,
            application_id=application.id,
            reply_to=tagged_address(settings, REVIEW_TAG + token),
            now=now,
        )
    return sent


def _registry_context(
    session: Session, application: Application, view: RegistryView
) -> dict[str, Any]:
    """What a reviewer needs beside the request: the codes' other IDs, sharing, the schedule."""
    own = [i.key for i in _items(session, application) if i.kind == "user_id"]
    codes = sorted({user_code_of(user_id) for user_id in own})
    code_rows = {
        code: sorted(
            (
                {
                    "user_id": info.user_id,
                    "office_code": info.office_code,
                    "status": info.status,
                    "in_this_application": info.user_id in own,
                    "open_receipt_no": info.open_receipt_no,
                }
                for info in view.ids_of_code(code)
            ),
            key=lambda row: str(row["user_id"]),
        )
        for code in codes
    }
    dates = registration_dates(session)
    proposed = application.proposed_start_date
    before = [d for d in dates if d < proposed][-NEARBY_DATES:]
    after = [d for d in dates if d >= proposed][:NEARBY_DATES]
    office = view.offices.get(application.office_code)
    return {
        "code_rows": code_rows,
        "shared_codes": [
            c for c, rows in code_rows.items() if len({r["office_code"] for r in rows}) > 1
        ],
        "nearby_dates": [*before, *after],
        "contacts": sorted(office.contact_emails) if office else [],
    }


def _items(session: Session, application: Application) -> list[ApplicationItem]:
    return list(
        session.exec(
            select(ApplicationItem)
            .where(ApplicationItem.application_id == application.id)
            .order_by(col(ApplicationItem.id))
        )
    )


# --- replies -------------------------------------------------------------------------------------


def handle_review_reply(
    session: Session,
    ctx: ReviewContext,
    inbound: InboundMessage,
    mail: ParsedMail,
    token_text: str,
) -> Outcome:
    """A staff member's reply at ``apply+t…``; what it led to.

    A cancel token goes to :func:`handle_cancel_reply`; every other token is checked here as a
    review token (so an applicant's token is refused for its purpose).
    """
    keys = _keys_for(session, ctx, token_text)
    if signed_purpose(keys, token_text, ctx.now) is Purpose.CANCEL:
        return handle_cancel_reply(session, ctx, inbound, mail, token_text)
    authorised = _authorise(session, ctx, inbound, mail, token_text, Purpose.REVIEW)
    if isinstance(authorised, Outcome):
        return authorised
    check, sender, staff, application = authorised
    assert check.token is not None
    if application.status != UNDER_REVIEW:
        _answer_staff(session, ctx, inbound, mail, notices.ALREADY_DECIDED, _decided(application))
        return Outcome.ALREADY_DECIDED
    if application.version != check.token.version:
        return _refuse(session, ctx, inbound, mail, check, sender, "application_changed")
    decision = read_decision(mail.text)
    if decision is None or decision.action is Action.WITHDRAW:
        _answer_staff(session, ctx, inbound, mail, notices.DECISION_UNREADABLE, {})
        return Outcome.DECISION_UNREADABLE
    try:
        result = decide(
            session, ctx, application, staff, decision, via="mail", inbound_id=inbound.id
        )
    except DecisionError as problem:
        _answer_staff(
            session,
            ctx,
            inbound,
            mail,
            notices.DECISION_REFUSED,
            {"message_ja": problem.message_ja, "message_en": problem.message_en},
        )
        return Outcome.DECISION_REFUSED
    use_token(session, check.token, ctx.now)
    if result == "approval_recorded":
        progress = _progress(session, application, ctx.settings)
        _answer_staff(session, ctx, inbound, mail, notices.APPROVAL_RECORDED, progress)
    return Outcome.DECISION


def _keys_for(session: Session, ctx: ReviewContext, token_text: str) -> Keyring:
    """The keys to check ``token_text`` with: read again from the database when none of this
    process's keys signed it (another process may have rotated them)."""
    return verifying_keyring(
        session,
        ctx.settings,
        lambda keys: signed_purpose(keys, token_text, ctx.now) is not None,
    )


class _Authorised(NamedTuple):
    check: TokenCheck
    sender: str
    staff: Staff
    application: Application


def _authorise(
    session: Session,
    ctx: ReviewContext,
    inbound: InboundMessage,
    mail: ParsedMail,
    token_text: str,
    purpose: Purpose,
) -> _Authorised | Outcome:
    """A staff reply's authority: the checked token, its holder and its application, or the
    outcome of the refusal (recorded, and answered only to a staff address)."""
    keys = _keys_for(session, ctx, token_text)
    check = check_reply_token(session, keys, token_text, purpose=purpose, now=ctx.now)
    sender = (mail.from_address or "").lower()
    refusal = _authority_problem(session, ctx, check, sender, inbound)
    if refusal is not None:
        return _refuse(session, ctx, inbound, mail, check, sender, refusal)
    assert check.token is not None
    staff = session.get(Staff, check.token.staff_id)
    application = session.get(Application, check.token.application_id)
    assert staff is not None and application is not None
    return _Authorised(check, sender, staff, application)


def _authority_problem(
    session: Session, ctx: ReviewContext, check: TokenCheck, sender: str, inbound: InboundMessage
) -> str | None:
    if not check.ok:
        return f"token_{check.refusal}"
    assert check.token is not None
    staff = session.get(Staff, check.token.staff_id)
    if staff is None or staff.email != sender:
        return "from_is_not_the_token_holder"
    if not staff.active:
        return "staff_inactive"
    if ctx.settings.review_envelope_check and not envelope_agrees(inbound.envelope_from, sender):
        return "envelope_sender_differs"
    if ctx.settings.trusted_authserv_id and not _authenticated(ctx.settings, inbound, sender):
        return "not_authenticated"
    return None


def _authenticated(settings: Settings, inbound: InboundMessage, sender: str) -> bool:
    """DKIM or DMARC pass for the From's domain, in a header the trusted server added (which
    ones those are depends on the channel: mailbot.authres)."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(bytes(inbound.raw)).items()
    domain = sender.rpartition("@")[2]
    return authenticated(
        [(name, str(value)) for name, value in headers],
        settings.trusted_authserv_id,
        domain,
        channel=inbound.channel,
        trusted_relays=settings.trusted_relay_networks,
    )


def _refuse(
    session: Session,
    ctx: ReviewContext,
    inbound: InboundMessage,
    mail: ParsedMail,
    check: TokenCheck,
    sender: str,
    reason: str,
) -> Outcome:
    """Change nothing; record and log why; answer only a staff address (nobody else learns)."""
    # The reason and where to look, never the token: it is a credential until it expires.
    log.warning(
        "reply refused: %s (inbound %s, application %s)",
        reason,
        inbound.id,
        check.token.application_id if check.token else "unknown",
    )
    session.add(
        AuditEvent(
            at=ctx.now,
            application_id=check.token.application_id if check.token else None,
            event="reply_refused",
            actor=sender or (inbound.envelope_from or ""),
            inbound_id=inbound.id,
            detail={"reason": reason, "subject": mail.subject},
        )
    )
    if sender and session.exec(select(Staff).where(Staff.email == sender)).first() is not None:
        advice_ja, advice_en = REFUSAL_ADVICE.get(reason, REFUSAL_ADVICE["default"])
        context = {"reason": reason, "advice_ja": advice_ja, "advice_en": advice_en}
        _answer_staff(session, ctx, inbound, mail, notices.REPLY_REFUSED, context)
    return Outcome.REPLY_REFUSED


# What a staff member whose reply was refused is told, by reason: the cause as far as mailbot
# knows it, and what to do. A bad signature is not necessarily their doing (the address may
# have been changed on the way, or mailbot's keys may have changed), so it says both.
REFUSAL_ADVICE: dict[str, tuple[str, str]] = {
    "token_malformed": (
        "返信先アドレスが途中で切れているか、変更されています。"
        "メールソフトの「返信」で、返信先を変えずに送ってください。",
        "The reply address was cut short or changed: use your mail program's Reply and leave "
        "the address as it is.",
    ),
    "token_bad_signature": (
        "返信先アドレスの署名を確認できませんでした。アドレスが途中で変更されたか、"
        "mailbot の署名鍵が変わった（運用側の問題）可能性があります。返信先を変えずに返信した"
        "場合は、運用担当者にお知らせください（mailbot のログに記録されています）。"
        "急ぐ場合は運用担当者が mailbot approve / reject / cancel で記録できます。",
        "mailbot could not verify the signature in the reply address. Either the address was "
        "changed on the way, or mailbot's signing keys changed (a problem on the operator's "
        "side). If you replied without changing the address, please tell the operator: the "
        "refusal is in mailbot's log. If it is urgent, the operator can record your answer "
        "with mailbot approve / reject / cancel.",
    ),
    "token_unknown": (
        "この返信先アドレスの記録が mailbot にありません（データベースの復元後など）。"
        "運用担当者にお知らせください。",
        "mailbot has no record of this reply address (after a database restore, for example). "
        "Please tell the operator.",
    ),
    "token_wrong_purpose": (
        "この返信先アドレスは別の用途のものです。審査の回答は審査依頼のメールに、"
        "取消は承認確定のお知らせに返信してください。",
        "This reply address is for another kind of answer: answer a review request to decide, "
        "and the notice that your approval took effect to cancel.",
    ),
    "token_used": (
        "この返信先アドレスはすでに使われています（1回限り有効です）。",
        "This reply address has been used already; each works once.",
    ),
    "token_expired": (
        "この返信先アドレスは有効期限が切れています。この申込についての、より新しいメールに"
        "返信してください。",
        "This reply address has expired: answer a newer mail about this application.",
    ),
    "from_is_not_the_token_holder": (
        "このメールを受け取ったアドレスから返信してください。",
        "Answer from the address the mail was sent to.",
    ),
    "staff_inactive": (
        "このアドレスは現在、審査担当者として登録されていません。",
        "This address is not active staff any more.",
    ),
    "envelope_sender_differs": (
        "このメールは、差出人（From）とは別のアドレスから送られていました（エンベロープの"
        "送信者が異なります）。ご自分のメールソフトから返信してください。心当たりがない場合は、"
        "誰かがあなたの名前で返信しようとした可能性があります。運用担当者にお知らせください。",
        "This mail was sent from another address than its From (the envelope sender differs). "
        "Reply from your own mail program. If you did not send it, somebody may have tried to "
        "answer in your name: please tell the operator.",
    ),
    "not_authenticated": (
        "送信元の認証（DKIM または DMARC）が確認できませんでした。"
        "組織のメールサーバーから送ってください。",
        "Your mail did not pass DKIM or DMARC at the trusted server: send it through your "
        "organisation's mail server.",
    ),
    "application_changed": (
        "このメールの後に申込が変わりました（利用開始日の変更など）。"
        "あなた宛ての最新のメールに返信してください。",
        "The application changed after this mail (its start date, say): answer the latest "
        "mail mailbot sent you about it.",
    ),
    "default": (
        "あなた宛ての最新のメール（審査依頼、または承認確定のお知らせ）に、"
        "そのメールを受け取ったアドレスから返信してください。",
        "Answer the latest mail mailbot sent you (the review request, or the notice that your "
        "approval took effect), from the address it was mailed to.",
    ),
}


def _answer_staff(
    session: Session,
    ctx: ReviewContext,
    inbound: InboundMessage,
    mail: ParsedMail,
    notice: notices.Notice,
    values: dict[str, Any],
) -> None:
    """Answer a staff member's reply (a refusal, what was recorded, what could not be read)."""
    assert inbound.id is not None and mail.from_address
    reply = Reply(inbound_id=inbound.id, mail=mail, to=mail.from_address)
    send_reply(session, ctx.settings, reply, notice, values, now=ctx.now)


def _decided(application: Application) -> dict[str, Any]:
    return {
        "receipt_no": application.receipt_no,
        "status_ja": {
            APPROVED: "承認",
            REJECTED: "却下",
            WITHDRAWN: "取下げ",
            CANCELLED: "承認後に取消",
        }.get(application.status, application.status),
        "decided_by": application.decided_by or "-",
        "decided_at": application.decided_at.isoformat(timespec="minutes")
        if application.decided_at
        else "-",
    }


def handle_applicant_reply(
    session: Session,
    ctx: ReviewContext,
    inbound: InboundMessage,
    mail: ParsedMail,
    token_text: str,
) -> Outcome:
    """A reply to a notice the applicant or manager got: a withdrawal, or a message for staff
    (recorded, and forwarded to them: mailbot.follow_up)."""
    keys = _keys_for(session, ctx, token_text)
    check = check_reply_token(session, keys, token_text, purpose=Purpose.APPLICANT, now=ctx.now)
    sender = (mail.from_address or "").lower()
    token = check.token
    if not check.ok or token is None or (token.recipient or "").lower() != sender:
        reason = f"token_{check.refusal}" if not check.ok else "from_is_not_the_addressee"
        return _refuse(session, ctx, inbound, mail, check, sender, reason)
    application = session.get(Application, token.application_id)
    assert application is not None
    decision = read_decision(mail.text)
    if decision is None or decision.action is not Action.WITHDRAW:
        _follow_up(session, ctx, application, inbound, mail, sender, "follow_up_received")
        return Outcome.FOLLOW_UP
    if application.status != UNDER_REVIEW:
        # Too late to withdraw by reply, but staff can still cancel an approved application:
        # they get the request, and the applicant (who holds the token) is told so.
        _follow_up(session, ctx, application, inbound, mail, sender, "withdrawal_too_late")
        values = {
            "organisation": ctx.settings.organisation,
            "receipt_no": application.receipt_no,
            "status_ja": STATUS_JA.get(application.status, application.status),
        }
        reply = Reply(inbound_id=_inbound_id(inbound), mail=mail, to=sender)
        send_reply(session, ctx.settings, reply, notices.WITHDRAWAL_TOO_LATE, values, now=ctx.now)
        return Outcome.FOLLOW_UP
    use_token(session, token, ctx.now)
    withdraw(session, ctx, application, actor=sender, reason=decision.reason, inbound_id=inbound.id)
    return Outcome.WITHDRAWAL


def _follow_up(
    session: Session,
    ctx: ReviewContext,
    application: Application,
    inbound: InboundMessage,
    mail: ParsedMail,
    sender: str,
    event: str,
) -> None:
    """Record the applicant's reply and forward it to staff (mailbot.follow_up)."""
    session.add(
        AuditEvent(
            at=ctx.now,
            application_id=application.id,
            event=event,
            actor=sender,
            inbound_id=inbound.id,
            detail={"subject": mail.subject, "status": application.status},
        )
    )
    forward_to_staff(session, ctx.settings, application, inbound, mail, sender=sender, now=ctx.now)


def _inbound_id(inbound: InboundMessage) -> int:
    assert inbound.id is not None
    return inbound.id


def handle_cancel_reply(
    session: Session,
    ctx: ReviewContext,
    inbound: InboundMessage,
    mail: ParsedMail,
    token_text: str,
) -> Outcome:
    """A staff member's ``取消 理由`` reply to the notice that their approval took effect.

    The same authority as a review decision (token, token holder, active staff, authentication),
    then :func:`mailbot.cancel.cancel_application`, the code ``mailbot cancel`` runs. The token
    is used up only when the cancellation is made; a reply it cannot act on is answered and
    leaves the token as it was.
    """
    authorised = _authorise(session, ctx, inbound, mail, token_text, Purpose.CANCEL)
    if isinstance(authorised, Outcome):
        return authorised
    check, sender, staff, application = authorised
    assert check.token is not None
    if application.status == APPROVED and application.version != check.token.version:
        return _refuse(session, ctx, inbound, mail, check, sender, "application_changed")
    command = read_decision(mail.text)
    if command is None or command.action is not Action.CANCEL:
        _answer_staff(
            session,
            ctx,
            inbound,
            mail,
            notices.CANCEL_UNREADABLE,
            {"receipt_no": application.receipt_no},
        )
        return Outcome.CANCEL_UNREADABLE
    try:
        cancel_application(
            session,
            ctx.settings,
            application.receipt_no,
            by=staff.email,
            reason=command.reason,
            now=ctx.now,
            apply_time=ctx.settings.apply_time,
            via="mail",
            inbound_id=inbound.id,
        )
    except CancelError as problem:
        _answer_staff(
            session,
            ctx,
            inbound,
            mail,
            notices.CANCEL_REFUSED,
            {
                "message_ja": problem.message_ja,
                "message_en": problem.message_en,
                "can_retry": problem.can_retry,
            },
        )
        return Outcome.CANCEL_REFUSED
    use_token(session, check.token, ctx.now)
    _answer_staff(
        session,
        ctx,
        inbound,
        mail,
        notices.CANCEL_RECORDED,
        {**application_context(session, application), "reason": command.reason},
    )
    return Outcome.CANCELLATION


# --- decisions -----------------------------------------------------------------------------------


def decide(
    session: Session,
    ctx: ReviewContext,
    application: Application,
    staff: Staff,
    decision: Decision,
    *,
    via: str,
    inbound_id: int | None = None,
) -> str:
    """Apply one staff decision (mail or CLI). Returns what happened."""
    add_log_fields(receipt_no=application.receipt_no)
    if not staff.active:
        raise DecisionError(
            ja=f"{staff.email} は有効な審査担当者ではありません。",
            en=f"{staff.email} is not active staff",
        )
    if application.status != UNDER_REVIEW:
        info = _decided(application)
        raise DecisionError(
            ja=f"申込受付番号 {application.receipt_no} は {info['decided_at']} に "
            f"{info['decided_by']} が{info['status_ja']}済みです。",
            en=f"{application.receipt_no} was already decided by {info['decided_by']} at "
            f"{info['decided_at']}",
        )
    if decision.action is Action.APPROVE:
        start = _staff_start_date(decision, ctx.today)
        return _approve(session, ctx, application, staff, start, via=via, inbound_id=inbound_id)
    if decision.action is Action.REJECT:
        if not decision.reason.strip():
            raise DecisionError(
                ja="却下の理由を「却下」の後に書いてください（例：却下 利用者IDが誤っています）。",
                en="Write the reason after 'reject' (e.g. 'reject: wrong user ID').",
            )
        _reject(session, ctx, application, staff, decision.reason, via=via, inbound_id=inbound_id)
        return "rejected"
    raise DecisionError(ja="取下げは申込者のみが行えます。", en="Only the applicant can withdraw.")


def _staff_start_date(decision: Decision, today: date) -> date | None:
    """Staff may set any date from today on (an emergency takes effect the same day)."""
    if decision.start_date_text is None:
        return None
    try:
        start = parse_date(decision.start_date_text)
    except InvalidDate:
        raise DecisionError(
            ja=f"利用開始日「{decision.start_date_text}」を日付として読めません（例：2026年12月15日）。",
            en=f"Cannot read the start date {decision.start_date_text!r} (e.g. 2026-12-15).",
        ) from None
    if start < today:
        raise DecisionError(
            ja=f"利用開始日 {start.isoformat()} は過去の日付です。"
            "本日以降の日付を指定してください。",
            en=f"The start date {start.isoformat()} is in the past; give today or later.",
        )
    return start


def _audit(
    session: Session,
    ctx: ReviewContext,
    application: Application,
    event: str,
    actor: str,
    inbound_id: int | None,
    **detail: Any,
) -> None:
    session.add(
        AuditEvent(
            at=ctx.now,
            application_id=application.id,
            event=event,
            actor=actor,
            inbound_id=inbound_id,
            detail=detail,
        )
    )


def _approvals(session: Session, application: Application) -> list[AuditEvent]:
    events = session.exec(
        select(AuditEvent)
        .where(AuditEvent.application_id == application.id)
        .where(AuditEvent.event == "approval")
        .order_by(col(AuditEvent.id))
    ).all()
    return [e for e in events if e.detail.get("version") == application.version]


def _progress(session: Session, application: Application, settings: Settings) -> dict[str, Any]:
    approvers = sorted({e.actor for e in _approvals(session, application)})
    return {
        "receipt_no": application.receipt_no,
        "approvers": approvers,
        "approvals_required": settings.approvals_required,
    }


def _approve(
    session: Session,
    ctx: ReviewContext,
    application: Application,
    staff: Staff,
    start: date | None,
    *,
    via: str,
    inbound_id: int | None,
) -> str:
    earlier = _approvals(session, application)
    if any(e.actor == staff.email for e in earlier):
        raise DecisionError(
            ja="この申込はすでにあなたが承認しています。別の審査担当者の承認を待っています。",
            en="You approved this application already; it waits for another staff member.",
        )
    more_needed = len(earlier) + 1 < ctx.settings.approvals_required
    if more_needed and start is not None and start != application.proposed_start_date:
        # The others were asked to review another start date: their approvals (and tokens)
        # are for the old version, so they are asked again about this one.
        earlier = []
        _change_proposed_date(session, ctx, application, staff, start, inbound_id)
    _audit(
        session,
        ctx,
        application,
        "approval",
        staff.email,
        inbound_id,
        version=application.version,
        start_date=start.isoformat() if start else None,
        via=via,
    )
    session.flush()
    if more_needed:
        return "approval_recorded"
    chosen = start or _latest_requested_date(earlier) or application.proposed_start_date
    finish(
        session,
        application,
        APPROVED,
        actor=staff.email,
        now=ctx.now,
        via=via,
        inbound_id=inbound_id,
    )
    application.start_date = chosen
    if chosen not in set(registration_dates(session)):
        _audit(
            session,
            ctx,
            application,
            "start_date_not_registration_date",
            staff.email,
            inbound_id,
            start_date=chosen.isoformat(),
        )
    send_to_applicants(
        session,
        ctx.settings,
        application,
        notices.CONFIRMATION_COMPLETE,
        status_url=status_url(session, ctx.settings, application.receipt_no, ctx.now),
        now=ctx.now,
    )
    _tell_approvers(session, ctx, application, {e.actor for e in earlier} | {staff.email})
    return "approved"


def _tell_approvers(
    session: Session, ctx: ReviewContext, application: Application, approvers: set[str]
) -> None:
    """Each approver learns that the approval took effect and, while the start date is still
    ahead, how to cancel it: their own single-use CANCEL token in the Reply-To (the review
    token they answered with is used up, and bound to the version before the approval)."""
    assert application.id is not None and application.start_date is not None
    settings = ctx.settings
    cancellable = not is_due(application.start_date, ctx.now, settings.zone, settings.apply_time)
    context = {
        **application_context(session, application),
        "approvers": sorted(approvers),
        "apply_time": settings.apply_time.strftime("%H:%M"),
        "cancellable": cancellable,
        "status_url": status_url(session, settings, application.receipt_no, ctx.now),
    }
    for member in active_staff(session):
        if member.email not in approvers:
            continue
        reply_to = _cancel_address(session, ctx, application, member) if cancellable else None
        queue_staff_mail(
            session,
            settings,
            member,
            notices.APPROVED_STAFF,
            context,
            cause=notices.application_cause(application.receipt_no),
            version=application.version,
            application_id=application.id,
            reply_to=reply_to,
            now=ctx.now,
        )


def _cancel_address(
    session: Session, ctx: ReviewContext, application: Application, member: Staff
) -> str:
    """A reply address with a CANCEL token for ``member``, bound to the approved version.

    It lives until the start date's apply time plus the review token lifetime: past the start
    date it can cancel nothing (:func:`cancel_application` refuses), but a late reply then gets
    the clear "too late" answer rather than a bare refusal of an expired token.
    """
    assert application.id is not None and application.start_date is not None
    due = run_time(application.start_date, ctx.settings.zone, ctx.settings.apply_time)
    token = issue_reply_token(
        session,
        keyring(session, ctx.settings),
        purpose=Purpose.CANCEL,
        application_id=application.id,
        version=application.version,
        staff_id=member.id,
        now=ctx.now,
        lifetime=due - ctx.now + timedelta(days=ctx.settings.review_token_days),
    )
    return tagged_address(ctx.settings, REVIEW_TAG + token)


def _change_proposed_date(
    session: Session,
    ctx: ReviewContext,
    application: Application,
    staff: Staff,
    start: date,
    inbound_id: int | None,
) -> None:
    _audit(
        session,
        ctx,
        application,
        "start_date_changed",
        staff.email,
        inbound_id,
        old=application.proposed_start_date.isoformat(),
        new=start.isoformat(),
    )
    application.proposed_start_date = start
    application.version += 1
    application.updated_at = ctx.now
    session.add(application)
    session.flush()
    items = _items(session, application)
    view = registry_view(
        session,
        sender=application.sender,
        office_code=application.office_code,
        user_ids=[i.key for i in items if i.kind == "user_id"],
        user_codes=[i.key for i in items if i.kind == "user_code"],
    )
    send_review_requests(session, ctx.settings, application, view=view, now=ctx.now, skip=staff)


def _latest_requested_date(events: list[AuditEvent]) -> date | None:
    for event in reversed(events):
        if event.detail.get("start_date"):
            return date.fromisoformat(str(event.detail["start_date"]))
    return None


def _reject(
    session: Session,
    ctx: ReviewContext,
    application: Application,
    staff: Staff,
    reason: str,
    *,
    via: str,
    inbound_id: int | None,
) -> None:
    finish(
        session,
        application,
        REJECTED,
        actor=staff.email,
        now=ctx.now,
        via=via,
        reason=reason,
        inbound_id=inbound_id,
    )
    send_to_applicants(
        session,
        ctx.settings,
        application,
        notices.REJECTION,
        status_url=status_url(session, ctx.settings, application.receipt_no, ctx.now),
        reason=reason,
        now=ctx.now,
    )


def withdraw(
    session: Session,
    ctx: ReviewContext,
    application: Application,
    *,
    actor: str,
    reason: str,
    inbound_id: int | None,
) -> None:
    finish(
        session,
        application,
        WITHDRAWN,
        actor=actor,
        now=ctx.now,
        via="mail",
        reason=reason,
        inbound_id=inbound_id,
    )
    context = {**application_context(session, application), "actor": actor, "reason": reason}
    for member in active_staff(session):
        queue_staff_mail(
            session,
            ctx.settings,
            member,
            notices.WITHDRAWN_STAFF,
            context,
            cause=notices.application_cause(application.receipt_no),
            application_id=application.id,
            now=ctx.now,
        )
    send_to_applicants(
        session,
        ctx.settings,
        application,
        notices.WITHDRAWN,
        reason=reason,
        actor=actor,
        now=ctx.now,
    )
