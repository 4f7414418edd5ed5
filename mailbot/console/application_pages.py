"""An application's page for staff (message, fields, IDs, one timeline, decision forms), the
decisions it posts, and a received message's page (headers, source, attachments, error; the
quarantine's reprocess and discard)."""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import quote

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from db.models import INBOUND_QUARANTINED
from mailbot.console import actions
from mailbot.console.detail import load_detail, load_original
from mailbot.console.http import (
    Form,
    now_of,
    redirect,
    render,
    root,
    staff_action,
    staff_page,
)
from mailbot.console.pages import CALENDAR
from mailbot.console.sessions import StaffSession
from mailbot.errors import NotFoundError
from mailbot.mime import UnreadableMail, parse_mail
from mailbot.review import ReviewContext
from mailbot.web_base import download, web_context
from mailbot.worker import get_inbound

SOURCE_SHOWN = 256 * 1024  # bytes of a message's source shown on its page (all: download)
DONE_MESSAGES = {
    "approved": ("承認しました。申込者と管理責任者に確認完了のお知らせを送ります。", "Approved."),
    "approval_recorded": (
        "承認を記録しました。もう1名の承認で確定します。",
        "Your approval is recorded; it takes effect with another staff member's.",
    ),
    "rejected": (
        "却下しました。申込者に理由を通知します。",
        "Rejected; the applicant is told why.",
    ),
    "cancelled": ("承認を取り消しました。申込者に理由を通知します。", "The approval is cancelled."),
    "reprocessed": ("再処理の待ち行列に戻しました。", "Queued for processing again."),
    "discarded": ("破棄しました。", "Discarded."),
    "retried": ("再送します。", "It will be sent again."),
}


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1


def application_href(request: Request, receipt_no: str) -> str:
    return f"{root(web_context(request).settings)}/a/{quote(receipt_no)}"


@staff_page
def application_page(request: Request, session: Session, who: StaffSession) -> Response:
    settings = web_context(request).settings
    receipt_no = str(request.path_params["receipt_no"])
    try:
        detail = load_detail(session, receipt_no, settings.max_attachment_bytes)
    except NotFoundError:
        return render(request, "not_found.html.j2", who=who, status=HTTPStatus.NOT_FOUND)
    done = request.query_params.get("done", "")
    return render(
        request,
        "application.html.j2",
        who=who,
        current="",
        d=detail,
        a=detail.application,
        done=DONE_MESSAGES.get(done),
        warning=request.query_params.get("warning") == "schedule",
        approvals_required=settings.approvals_required,
        today=now_of(request).astimezone(settings.zone).date(),
    )


def _after(request: Request, receipt_no: str, done: actions.Done) -> Response:
    url = f"{application_href(request, receipt_no)}?done={done.result}"
    if done.warning_ja:  # a code, not the text: nothing a link could put on the page
        url += "&warning=schedule"
    return redirect(url + "#timeline")


def _asked(request: Request, who: StaffSession, form: Form) -> actions.Asked:
    """The decision the page's form asks for: on its application, at the version it showed."""
    context = web_context(request)
    return actions.Asked(
        ReviewContext(context.settings, CALENDAR, context.clock()),
        by=who.email,
        receipt_no=str(request.path_params["receipt_no"]),
        version=_int(form.get("version")),
    )


@staff_action
def approve(request: Request, session: Session, who: StaffSession, form: Form) -> Response:
    asked = _asked(request, who, form)
    start_date, force = form.get("start_date"), form.get("force") == "1"
    done = actions.approve(session, asked, start_date=start_date, force=force)
    return _after(request, asked.receipt_no, done)


@staff_action
def reject(request: Request, session: Session, who: StaffSession, form: Form) -> Response:
    asked = _asked(request, who, form)
    done = actions.reject(session, asked, reason=form.get("reason"))
    return _after(request, asked.receipt_no, done)


@staff_action
def cancel(request: Request, session: Session, who: StaffSession, form: Form) -> Response:
    asked = _asked(request, who, form)
    done = actions.cancel(session, asked, reason=form.get("reason"))
    return _after(request, asked.receipt_no, done)


# --- received messages ---------------------------------------------------------------------------


def _message_id(request: Request) -> int:
    return _int(str(request.path_params["inbound_id"]))


@staff_page
def message_page(request: Request, session: Session, who: StaffSession) -> Response:
    settings = web_context(request).settings
    try:
        inbound = get_inbound(session, _message_id(request))
    except NotFoundError:
        return render(request, "not_found.html.j2", who=who, status=HTTPStatus.NOT_FOUND)
    assert inbound.id is not None
    original = load_original(session, inbound.id, settings.max_attachment_bytes)
    raw = bytes(inbound.raw or b"")
    return render(
        request,
        "message.html.j2",
        who=who,
        current="quarantine" if inbound.status == INBOUND_QUARANTINED else "",
        m=inbound,
        o=original,
        source=raw[:SOURCE_SHOWN].decode("utf-8", errors="replace"),
        source_cut=len(raw) > SOURCE_SHOWN,
        done=DONE_MESSAGES.get(request.query_params.get("done", "")),
    )


@staff_page
def message_source(request: Request, session: Session, who: StaffSession) -> Response:
    try:
        inbound = get_inbound(session, _message_id(request))
    except NotFoundError:
        return render(request, "not_found.html.j2", who=who, status=HTTPStatus.NOT_FOUND)
    return Response(
        bytes(inbound.raw or b""),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="message-{inbound.id}.eml"'},
    )


@staff_page
def attachment(request: Request, session: Session, who: StaffSession) -> Response:
    """One attachment, always as a download of octet-stream: a sender's HTML or SVG must never
    be rendered from the console's origin."""
    settings = web_context(request).settings
    # 0, 1, …: as the message page numbers them (a Python index of -1 would be the last one).
    n = _int(str(request.path_params["n"]))
    try:
        if n < 0:
            raise IndexError(n)
        inbound = get_inbound(session, _message_id(request))
        mail = parse_mail(
            bytes(inbound.raw or b""), max_attachment_bytes=settings.max_attachment_bytes
        )
        part = mail.attachments[n]
    except (NotFoundError, UnreadableMail, IndexError):
        return render(request, "not_found.html.j2", who=who, status=HTTPStatus.NOT_FOUND)
    ascii_name = "".join(
        ch if (ch.isascii() and ch.isalnum()) or ch in "._-" else "_"
        for ch in part.filename or "attachment"
    )
    return download(
        part.payload, "application/octet-stream", ascii_name, part.filename or "attachment"
    )


@staff_action
def reprocess(request: Request, session: Session, who: StaffSession, form: Form) -> Response:
    inbound_id = _message_id(request)
    done = actions.reprocess(session, now_of(request), by=who.email, inbound_id=inbound_id)
    return _after_message(request, inbound_id, done)


@staff_action
def discard(request: Request, session: Session, who: StaffSession, form: Form) -> Response:
    inbound_id = _message_id(request)
    done = actions.discard(
        session, now_of(request), by=who.email, inbound_id=inbound_id, reason=form.get("reason")
    )
    return _after_message(request, inbound_id, done)


def _after_message(request: Request, inbound_id: int, done: actions.Done) -> Response:
    url = f"{root(web_context(request).settings)}/messages/{inbound_id}?done={done.result}"
    return redirect(url)


@staff_action
def retry(request: Request, session: Session, who: StaffSession, form: Form) -> Response:
    outbound_id = _int(str(request.path_params["outbound_id"]))
    actions.retry_notice(session, now_of(request), by=who.email, outbound_id=outbound_id)
    return redirect(f"{root(web_context(request).settings)}/queues/failed?done=retried")
