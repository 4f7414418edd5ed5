"""compose(): the headers and encodings of outgoing Japanese mail, read back as a mailer would."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailbot.compose import (
    MAX_REFERENCES,
    ComposedMail,
    ComposeError,
    compose,
    normalize_message_id,
)
from mailbot.config import Settings, load_settings

NOW = datetime(2026, 5, 1, 1, 2, 3, tzinfo=UTC)
REQUEST_ID = "<CAFx1234.5678@mail.example.co.jp>"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        domain="mailbot.example.jp",
    )


def make(settings: Settings, **overrides: object) -> ComposedMail:
    arguments: dict[str, object] = {
        "to": "yamada@example.co.jp",
        "to_name": "山田 太郎",
        "subject": "廃止申込を受け付けました（申込受付番号 260001A）",
        "body": "株式会社サンプル御中\n㈱ ① 髙 﨑\n以上\n",
        "kind": "receipt_complete",
        "now": NOW,
    }
    arguments.update(overrides)
    return compose(settings, **arguments)  # type: ignore[arg-type]


def parse(mail: ComposedMail) -> EmailMessage:
    parsed = email.message_from_bytes(mail.raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_message_id_is_ours_unique_and_in_the_header(settings: Settings) -> None:
    first, second = make(settings), make(settings)
    assert first.message_id.startswith("<receipt_complete.")
    assert first.message_id.endswith("@mailbot.example.jp>")
    assert first.message_id != second.message_id
    assert parse(first)["Message-ID"] == first.message_id


def test_from_to_date_and_reply_to(settings: Settings) -> None:
    parsed = parse(make(settings, reply_to="apply+r260001a@mailbot.example.jp"))
    sender = parsed["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == (
        settings.sender_name,
        "apply@mailbot.example.jp",
    )
    recipient = parsed["To"].addresses[0]
    assert (recipient.display_name, recipient.addr_spec) == ("山田 太郎", "yamada@example.co.jp")
    assert parsed["Reply-To"] == "apply+r260001a@mailbot.example.jp"
    assert parsed["Date"].datetime == NOW
    assert parsed["Date"].endswith("+0900")  # shown in the recipients' own zone


def test_no_reply_to_unless_given(settings: Settings) -> None:
    assert parse(make(settings))["Reply-To"] is None


def test_threading_headers(settings: Settings) -> None:
    earlier = "<first@example.co.jp>"
    parsed = parse(make(settings, in_reply_to=REQUEST_ID, references=[earlier]))
    assert parsed["In-Reply-To"] == REQUEST_ID
    assert parsed["References"].split() == [earlier, REQUEST_ID]


def test_ids_without_brackets_are_bracketed_and_junk_is_dropped(settings: Settings) -> None:
    parsed = parse(make(settings, in_reply_to="abc@example.jp", references=["not an id", "x@y"]))
    assert parsed["In-Reply-To"] == "<abc@example.jp>"
    assert parsed["References"].split() == ["<x@y>", "<abc@example.jp>"]


def test_long_message_ids_are_never_rfc2047_encoded(settings: Settings) -> None:
    # The stock policy would write =?utf-8?q?=3Cxxx...?= here and break threading.
    long_id = "<" + "x" * 120 + "@example.co.jp>"
    mail = make(
        settings, in_reply_to=long_id, references=[f"<{n}.{'y' * 40}@a.jp>" for n in range(5)]
    )
    raw_headers = email.message_from_bytes(mail.raw, policy=policy.compat32)
    for name in ("Message-ID", "In-Reply-To", "References"):
        assert "=?" not in raw_headers[name]
    assert f"In-Reply-To: {long_id}\r\n".encode() in mail.raw
    parsed = parse(mail)
    assert parsed["In-Reply-To"] == long_id
    assert parsed["References"].split()[-1] == long_id


def test_references_are_capped_keeping_the_root(settings: Settings) -> None:
    chain = [f"<m{n}@example.jp>" for n in range(50)]
    parsed = parse(make(settings, in_reply_to=chain[-1], references=chain[:-1]))
    kept = parsed["References"].split()
    assert len(kept) == MAX_REFERENCES
    assert kept[0] == chain[0]
    assert kept[-1] == chain[-1]


def test_auto_submitted_and_suppression(settings: Settings) -> None:
    replied = parse(make(settings, in_reply_to=REQUEST_ID))
    assert replied["Auto-Submitted"] == "auto-replied"
    assert replied["X-Auto-Response-Suppress"] == "All"
    assert replied["Precedence"] is None  # RFC 3834 section 5
    generated = parse(make(settings, auto_submitted="auto-generated"))
    assert generated["Auto-Submitted"] == "auto-generated"
    with pytest.raises(ComposeError):
        make(settings, auto_submitted="no")


def test_japanese_subject_round_trips_with_the_prefix_once(settings: Settings) -> None:
    mail = make(settings)
    expected = "【NSS】廃止申込を受け付けました（申込受付番号 260001A）"
    assert mail.subject == expected
    assert parse(mail)["Subject"] == expected
    again = make(settings, subject=expected)
    assert parse(again)["Subject"] == expected


def test_line_breaks_in_a_subject_are_flattened(settings: Settings) -> None:
    assert make(settings, subject="Re: 申込\r\n について").subject == "【NSS】Re: 申込 について"


def test_body_keeps_windows_japanese_characters(settings: Settings) -> None:
    mail = make(settings)
    body = parse(mail).get_body()
    assert body is not None
    assert body.get_content_type() == "text/plain"
    assert body.get_content_charset() == "utf-8"
    assert body["Content-Transfer-Encoding"] == "base64"
    text = body.get_content()
    assert "㈱ ① 髙 﨑" in text
    assert text.startswith("株式会社サンプル御中")


def test_wire_form_is_seven_bit_with_crlf(settings: Settings) -> None:
    raw = make(settings, attachments=[("申込書.csv", "text/csv", b"ID\r\n")]).raw
    raw.decode("ascii")  # no 8-bit data anywhere
    lines = raw.split(b"\r\n")
    assert all(b"\n" not in line and len(line) <= 998 for line in lines)


def test_japanese_attachment_name_round_trips(settings: Settings) -> None:
    data = "利用者ID,理由\r\n1ANACA0A,廃止\r\n".encode("cp932")
    name = "廃止申込書_㈱サンプル髙﨑.csv"
    mail = make(
        settings,
        attachments=[(name, "text/csv", data), ("通知.pdf", "application/pdf", b"%PDF-1.4")],
    )
    assert b"filename*" in mail.raw  # RFC 2231
    attachments = list(parse(mail).iter_attachments())
    assert [a.get_filename() for a in attachments] == [name, "通知.pdf"]
    assert attachments[0].get_content_type() == "text/csv"
    assert attachments[0].get_payload(decode=True) == data
    assert attachments[1].get_payload(decode=True) == b"%PDF-1.4"
    body = parse(mail).get_body()
    assert body is not None
    assert "髙" in body.get_content()


@pytest.mark.parametrize("bad", ["no-at-sign", "山田@example.jp", "a b@example.jp", ""])
def test_unusable_recipient_is_a_compose_error(settings: Settings, bad: str) -> None:
    with pytest.raises(ComposeError):
        make(settings, to=bad)


def test_naive_now_is_refused(settings: Settings) -> None:
    with pytest.raises(ComposeError):
        make(settings, now=datetime(2026, 5, 1, 10, 0))


def test_bad_attachment_type_is_refused(settings: Settings) -> None:
    with pytest.raises(ComposeError):
        make(settings, attachments=[("a.bin", "binary", b"x")])


@pytest.mark.parametrize(
    ("value", "expected"),
    [("<a@b>", "<a@b>"), ("a@b", "<a@b>"), (" <a@b> ", "<a@b>"), ("a b@c", None), ("<>", None)],
)
def test_normalize_message_id(value: str, expected: str | None) -> None:
    assert normalize_message_id(value) == expected


def test_a_message_id_fixed_beforehand_is_used_as_given(settings: Settings) -> None:
    fixed = "<applied.0123456789abcdef@mailbot.example.jp>"
    mail = make(settings, message_id=fixed)
    assert mail.message_id == fixed and parse(mail)["Message-ID"] == fixed
    with pytest.raises(ComposeError):
        make(settings, message_id="not an id")
