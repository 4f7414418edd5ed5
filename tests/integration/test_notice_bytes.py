"""Every kind of mail mailbot sends, pinned byte for byte against a golden file.

Each notice is produced the way users cause it (SMTP in through the gateway, the worker, the
outbox into a Maildir; the scheduler's own functions for the applied notice and the reminder
digest) on the harness's fixed clock, and compared with ``tests/golden/<name>.txt``. Only what
is random is replaced before the comparison: Message-IDs (``uuid4`` hex), reply tokens in
addresses, link tokens in URLs, MIME boundaries, and when an XLSX attachment was written.
Everything else is compared exactly:

* every header line as written (RFC 2047 words, folding, order), with CRLF line ends;
* every base64 part is checked to be the standard encoding of its content (76-character lines,
  CRLF), and then the content is compared: a text part as its decoded text, an attachment as
  its length and SHA-256, an XLSX (a zip) member by member, since the archive records when
  it was written (each entry's time, and the modified date openpyxl sets).

So a golden file that matches means the same bytes on the wire, tokens aside. A change of
wording is made on purpose: regenerate with ``MAILBOT_UPDATE_GOLDEN=1 pytest
tests/integration/test_notice_bytes.py`` and commit the golden files in a commit of their own
that says so.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import zipfile
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import HeaderParser
from email.policy import compat32
from pathlib import Path

import pytest
from sqlmodel import col, select

from db.engine import session_scope
from db.models import OutboundMessage
from mailbot.applying import apply_due
from mailbot.calendar import BusinessCalendar
from mailbot.reminders import send_review_reminders
from tests.integration.conftest import HarnessFactory
from tests.support.harness import STAFF, Harness
from tests.support.requests import INTAKE, ITO, KATO, OUTSIDER, SATO, YAMADA, form, mail
from tests.support.review import STAFF2, START, answer, submit, to, with_second_reviewer

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
TEMPLATES = Path(__file__).resolve().parents[2] / "mailbot" / "templates"
UPDATE = os.environ.get("MAILBOT_UPDATE_GOLDEN") == "1"


# --- normalising: only what is random --------------------------------------------------------

_RANDOM = (
    # Message-IDs: <kind.uuid4hex@domain>, the applied notice's <applied.nonce.id.role@domain>,
    # and the test's own inbound ids (uuid4 hex too).
    (re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])"), "HEX"),
    # Reply tokens: apply+t… (staff) and apply+a… (applicants), 32 base32 characters.
    (re.compile(r"apply\+([ta])[a-z2-7]{32}@"), r"apply+\1TOKEN@"),
    # Link tokens in URLs (status page, office page): an expiry and a signature.
    (re.compile(r"\?t=[A-Za-z0-9_.\-]+"), "?t=TOKEN"),
    # MIME boundaries as the email package makes them.
    (re.compile(r"={15}\d+=="), "=BOUNDARY=="),
)


def normalised(raw: bytes) -> str:
    """The message as text for comparison: CRLF checked and shown as LF, base64 parts checked
    to be canonical and shown decoded, the random parts replaced."""
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    text = _entity(raw.decode("ascii"))  # the wire form is 7-bit clean
    for pattern, replacement in _RANDOM:
        text = pattern.sub(replacement, text)
    return text.replace("\r\n", "\n")


def _entity(entity: str) -> str:
    head, separator, body = entity.partition("\r\n\r\n")
    assert separator, "no blank line after the header"
    headers = HeaderParser(policy=compat32).parsestr(head + "\r\n\r\n")
    if headers.get_content_maintype() == "multipart":
        boundary = headers.get_boundary()
        assert boundary is not None
        delimiter = f"--{boundary}"
        pieces = body.split(delimiter)
        # pieces: preamble, then "\r\n<part>\r\n" for each part, then "--\r\n" (the close)
        parts = [_entity(piece[2:-2]) for piece in pieces[1:-1]]
        assert all(piece.startswith("\r\n") and piece.endswith("\r\n") for piece in pieces[1:-1])
        inner = "".join(f"{delimiter}\r\n{part}\r\n" for part in parts)
        return f"{head}\r\n\r\n{pieces[0]}{inner}{delimiter}{pieces[-1]}"
    if str(headers.get("Content-Transfer-Encoding", "")).lower() != "base64":
        return entity
    payload = base64.b64decode(body)
    canonical = base64.encodebytes(payload).decode("ascii").replace("\n", "\r\n")
    assert body == canonical, "a base64 part not in the standard encoding"
    if headers.get_content_disposition() != "attachment":
        charset = headers.get_content_charset() or "us-ascii"
        return f"{head}\r\n\r\n[base64 of the {charset} text below]\r\n{payload.decode(charset)}"
    return f"{head}\r\n\r\n[base64 of {_attachment(payload)}]\r\n"


# When an XLSX was written: the time of each zip entry, and the modified date openpyxl sets.
_XLSX_MODIFIED = re.compile(rb"<dcterms:modified ([^>]*)>[^<]*</dcterms:modified>")


def _attachment(payload: bytes) -> str:
    """An attachment's content: its bytes' digest; for a zip (XLSX), each member's, since the
    archive itself carries the time it was written."""
    if not payload.startswith(b"PK\x03\x04"):
        return f"{len(payload)} bytes, sha256 {hashlib.sha256(payload).hexdigest()}"
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        members = []
        for info in archive.infolist():
            data = _XLSX_MODIFIED.sub(
                rb"<dcterms:modified \1>WRITTEN</dcterms:modified>", archive.read(info)
            )
            members.append(
                f"\r\n  {info.filename}: {len(data)} bytes, sha256 "
                f"{hashlib.sha256(data).hexdigest()}"
            )
    return f"a zip of {len(members)} members:" + "".join(members)


def pin(h: Harness, kind: str, *, name: str | None = None, to: str | None = None) -> None:
    """The first ``kind`` notice queued (to ``to``, when given) equals its golden file."""
    with session_scope(h.engine) as session:
        query = select(OutboundMessage).where(col(OutboundMessage.kind) == kind)
        if to is not None:
            query = query.where(col(OutboundMessage.recipient) == to)
        row = session.exec(query.order_by(col(OutboundMessage.id))).first()
    assert row is not None and row.raw is not None, f"no {kind} notice was sent"
    assert row.status == "sent"
    actual = normalised(bytes(row.raw))
    golden = GOLDEN / f"{name or kind}.txt"
    if UPDATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(actual, encoding="utf-8", newline="\n")
    assert actual == golden.read_text(encoding="utf-8"), f"{golden.name} differs"


# --- producing each kind the way users cause it ---------------------------------------------


def answer_and_pin(h: Harness, message: EmailMessage, *steps: tuple[str, str, str, str]) -> None:
    """For each step (sender, body, kind, recipient): the sender answers ``message`` with the
    body, and the first notice of that kind to the recipient is pinned."""
    for sender, body, kind, recipient in steps:
        answer(h, message, sender, body)
        pin(h, kind, to=recipient)


def approved_notice(out: list[EmailMessage], staff: str) -> EmailMessage:
    return next(m for m in out if to(m) == staff and "承認が確定" in str(m["Subject"]))


@pytest.fixture
def h(harness_factory: HarnessFactory) -> Harness:
    return with_second_reviewer(harness_factory())


def test_a_request_approved_then_cancelled(h: Harness) -> None:
    sent = submit(h)
    pin(h, "receipt_complete", to=YAMADA)
    pin(h, "review_request", to=STAFF)
    out = answer(h, sent[f"review:{STAFF}"], STAFF, "承認します")
    pin(h, "confirmation_complete", to=YAMADA)
    pin(h, "approved_staff", to=STAFF)
    answer(h, sent[f"review:{STAFF2}"], STAFF2, "承認")
    pin(h, "already_decided", to=STAFF2)

    receipt = sent[f"receipt:{YAMADA}"]
    answer(h, receipt, YAMADA, "利用開始日の前日に端末を片付けてもよいでしょうか。")
    pin(h, "follow_up_staff", to=STAFF)
    answer(h, receipt, YAMADA, "取下げ 端末を使い続けることになりました")
    pin(h, "withdrawal_too_late", to=YAMADA)

    answer_and_pin(
        h,
        approved_notice(out, STAFF),
        (STAFF, "よろしくお願いします", "cancel_unreadable", STAFF),
        (STAFF, "取消", "cancel_refused", STAFF),
        (STAFF, "取消 申込者から取消の依頼がありました", "cancel_recorded", STAFF),
    )
    pin(h, "cancelled", to=YAMADA)
    pin(h, "cancelled_staff", to=STAFF2)


def test_a_request_refused_answers_then_rejected(h: Harness) -> None:
    answer_and_pin(
        h,
        submit(h)[f"review:{STAFF}"],
        (STAFF2, "承認", "reply_refused", STAFF2),  # not the member the token was issued to
        (STAFF, "よろしくお願いします", "decision_unreadable", STAFF),
        (STAFF, "却下", "decision_refused", STAFF),
        (STAFF, "却下 利用者コードの全IDが含まれていません", "rejection", YAMADA),
    )


def test_a_request_withdrawn(h: Harness) -> None:
    sent = submit(h)
    answer(h, sent[f"receipt:{YAMADA}"], YAMADA, "取下げ 端末を使い続けることになりました")
    pin(h, "withdrawn", to=YAMADA)
    pin(h, "withdrawn_staff", to=STAFF)


def test_two_approvals_required(harness_factory: HarnessFactory) -> None:
    h = with_second_reviewer(harness_factory(approvals_required=2))
    sent = submit(h)
    answer(h, sent[f"review:{STAFF}"], STAFF, "承認")
    pin(h, "approval_recorded", to=STAFF)


def test_the_applied_notice(h: Harness) -> None:
    sent = submit(h)
    answer(h, sent[f"review:{STAFF}"], STAFF, "承認")
    h.now = datetime(2026, 12, 14, 15, 0, tzinfo=UTC)  # 12/15 00:00 in Tokyo: the start date
    report = apply_due(h.engine, h.settings, h.now)
    assert len(report.applied) == 1
    h.deliver()
    pin(h, "applied", to=YAMADA)


def test_the_review_reminder(h: Harness) -> None:
    submit(h)
    h.now = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)  # Tuesday 9:30 in Tokyo: overdue
    with session_scope(h.engine) as session:
        assert send_review_reminders(session, h.settings, BusinessCalendar(), h.now) == 2
    h.deliver()
    pin(h, "review_reminder", to=STAFF)


def test_answers_to_a_sender(h: Harness) -> None:
    h.round_trip(mail("help", subject="help"))
    pin(h, "help", to=YAMADA)
    outsider_help = (
        f"From: {OUTSIDER}\r\nTo: {INTAKE}\r\nSubject: help\r\n"
        "Message-ID: <help-1@example.net>\r\n\r\nPlease send the form.\r\n"
    ).encode()
    h.round_trip(outsider_help, mail_from=OUTSIDER)
    pin(h, "help", name="help_outsider", to=OUTSIDER)
    stranger = "eve@example.org"
    h.round_trip(mail(form("1ANACA0A", start=START), sender=stranger), mail_from=stranger)
    pin(h, "refusal", to=stranger)
    h.round_trip(mail(form("1ANACA0X", start="来週"), sender=SATO), mail_from=SATO)
    pin(h, "request_problems", to=SATO)
    h.round_trip(mail("契約内容確認", subject="契約内容確認", sender=KATO), mail_from=KATO)
    pin(h, "contract", to=KATO)
    nested = (
        f"From: {ITO}\r\nTo: {INTAKE}\r\nSubject: =?UTF-8?B?55Sz6L68?=\r\n"
        "Message-ID: <nested@example.co.jp>\r\nMIME-Version: 1.0\r\n"
    ).encode() + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(1000)
    )
    h.round_trip(nested + b"Content-Type: text/plain\r\n\r\nhi\r\n", mail_from=ITO)
    pin(h, "unreadable", to=ITO)


def test_every_mail_template_is_pinned() -> None:
    """One golden file per mail template (the web pages and the partials, named _…, aside)."""
    templates = [
        path
        for path in TEMPLATES.rglob("*.txt.j2")
        if not path.name.startswith("_") and "web" not in path.relative_to(TEMPLATES).parts
    ]
    assert len(list(GOLDEN.glob("*.txt"))) == len(templates), (
        "a mail template without its golden file: produce the notice in a test here, pin() it, "
        "and write the file with MAILBOT_UPDATE_GOLDEN=1"
    )
