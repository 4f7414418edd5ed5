"""Replies at mailbot's reply addresses: a staff member's answer to a review request or to the
notice that their approval took effect (``apply+t…``), and an applicant's or manager's reply to
a notice (``apply+a…``). Each is dispatched by what its first line says (mailbot.review.commands)
once its authority is established (mailbot.review.authority); a reply without authority changes
nothing, is written to the audit log with its reason, and gets a short answer only when it comes
from a staff address. Each handler returns what the message led to (an Outcome).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import Session, select

from db.models import APPROVED, UNDER_REVIEW, Application, AuditEvent, InboundMessage, Staff
from mailbot import notices
from mailbot.applications import STATUS_JA, audit
from mailbot.mime import ParsedMail
from mailbot.notify import Reply, application_context, send_reply
from mailbot.outcome import Outcome
from mailbot.review.authority import (
    Refusal,
    applicant_authority,
    keys_for,
    staff_authority,
)
from mailbot.review.cancel import CancelError, cancel_application
from mailbot.review.commands import Action, read_decision
from mailbot.review.context import ReviewContext
from mailbot.review.decide import DecisionError, decide, decided, progress, withdraw
from mailbot.review.follow_up import forward_to_staff
from mailbot.tokens import Purpose, signed_purpose, use_token

log = logging.getLogger("mailbot.review")


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
    keys = keys_for(session, ctx, token_text)
    if signed_purpose(keys, token_text, ctx.now) is Purpose.CANCEL:
        return handle_cancel_reply(session, ctx, inbound, mail, token_text)
    authority = staff_authority(session, ctx, inbound, mail, token_text, Purpose.REVIEW)
    if isinstance(authority, Refusal):
        return refuse(session, ctx, inbound, mail, authority)
    check, sender, staff, application = authority
    assert check.token is not None
    if application.status != UNDER_REVIEW:
        answer_staff(
            session,
            ctx,
            inbound,
            mail,
            notices.ALREADY_DECIDED,
            decided(application, ctx.settings.zone),
        )
        return Outcome.ALREADY_DECIDED
    if application.version != check.token.version:
        return refuse(session, ctx, inbound, mail, Refusal(check, sender, "application_changed"))
    decision = read_decision(mail.text)
    if decision is None or decision.action is Action.WITHDRAW:
        answer_staff(session, ctx, inbound, mail, notices.DECISION_UNREADABLE, {})
        return Outcome.DECISION_UNREADABLE
    try:
        result = decide(
            session,
            ctx,
            application,
            staff,
            decision,
            via="mail",
            inbound_id=inbound.id,
            expected_version=check.token.version,
        )
    except DecisionError as problem:
        answer_staff(
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
        so_far = progress(session, application, ctx.settings)
        answer_staff(session, ctx, inbound, mail, notices.APPROVAL_RECORDED, so_far)
    return Outcome.DECISION


def handle_cancel_reply(
    session: Session,
    ctx: ReviewContext,
    inbound: InboundMessage,
    mail: ParsedMail,
    token_text: str,
) -> Outcome:
    """A staff member's ``取消 理由`` reply to the notice that their approval took effect.

    The same authority as a review decision (token, token holder, active staff,
    authentication), then :func:`mailbot.review.cancel.cancel_application`, the code
    ``mailbot cancel`` runs. The token is used up only when the cancellation is made; a reply
    it cannot act on is answered and leaves the token as it was.
    """
    authority = staff_authority(session, ctx, inbound, mail, token_text, Purpose.CANCEL)
    if isinstance(authority, Refusal):
        return refuse(session, ctx, inbound, mail, authority)
    check, sender, staff, application = authority
    assert check.token is not None
    if application.status == APPROVED and application.version != check.token.version:
        return refuse(session, ctx, inbound, mail, Refusal(check, sender, "application_changed"))
    command = read_decision(mail.text)
    if command is None or command.action is not Action.CANCEL:
        answer_staff(
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
        answer_staff(
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
    answer_staff(
        session,
        ctx,
        inbound,
        mail,
        notices.CANCEL_RECORDED,
        {**application_context(session, application), "reason": command.reason},
    )
    return Outcome.CANCELLATION


def handle_applicant_reply(
    session: Session,
    ctx: ReviewContext,
    inbound: InboundMessage,
    mail: ParsedMail,
    token_text: str,
) -> Outcome:
    """A reply to a notice the applicant or manager got: a withdrawal, or a message for staff
    (recorded, and forwarded to them: mailbot.review.follow_up)."""
    authority = applicant_authority(session, ctx, mail, token_text)
    if isinstance(authority, Refusal):
        return refuse(session, ctx, inbound, mail, authority)
    token, sender, application = authority
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
    """Record the applicant's reply and forward it to staff (mailbot.review.follow_up)."""
    audit(
        session,
        application,
        event,
        actor=sender,
        now=ctx.now,
        inbound_id=inbound.id,
        subject=mail.subject,
        status=application.status,
    )
    forward_to_staff(session, ctx.settings, application, inbound, mail, sender=sender, now=ctx.now)


def _inbound_id(inbound: InboundMessage) -> int:
    assert inbound.id is not None
    return inbound.id


def refuse(
    session: Session,
    ctx: ReviewContext,
    inbound: InboundMessage,
    mail: ParsedMail,
    refusal: Refusal,
) -> Outcome:
    """Change nothing; record and log why; answer only a staff address (nobody else learns)."""
    check, sender, reason = refusal
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
        answer_staff(session, ctx, inbound, mail, notices.REPLY_REFUSED, context)
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


def answer_staff(
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
