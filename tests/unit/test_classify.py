"""mailbot.classify: one test per signal, on messages shaped as real mailers and MTAs send them."""

from __future__ import annotations

from email.mime.application import MIMEApplication
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from mailbot.classify import Classification, Kind, bounced_message_ids, classify, normalise_subject
from mailbot.mime import ParsedMail, parse_mail

SAMPLES = Path(__file__).resolve().parents[1] / "samples"  # docs/japanese-mail.md#the-sample-mails
INTAKE = "apply@mailbot.localhost"
DOMAIN = "mailbot.localhost"
REQUEST_BODY = "事業所コード：TYO01\r\n廃止する利用者ID：1ANACA0A\r\n"


def mail(
    extra: str = "",
    *,
    sender: str = "Yamada <yamada@example.co.jp>",
    to: str = INTAKE,
    subject: str = "利用者ID廃止申込",
    body: str = REQUEST_BODY,
) -> ParsedMail:
    text = MIMEText(body, "plain", "utf-8")
    text["From"] = sender
    text["To"] = to
    text["Subject"] = subject
    text["Message-ID"] = "<m1@example.co.jp>"
    raw = text.as_bytes()
    head, _, rest = raw.partition(b"\n\n")
    return parse_mail(head + b"\n" + extra.encode() + b"\n\n" + rest if extra else raw)


def run(parsed: ParsedMail, envelope_from: str | None = "yamada@example.co.jp") -> Classification:
    return classify(parsed, envelope_from, intake_address=INTAKE, own_domain=DOMAIN)


def test_normal_request_is_a_request() -> None:
    result = run(mail())
    assert (result.kind, result.may_answer) == (Kind.REQUEST, True)


@pytest.mark.parametrize(
    "name", ["request-body-iso2022jp", "request-body-utf8", "request-csv-cp932"]
)
def test_samples_are_requests(name: str) -> None:
    parsed = parse_mail((SAMPLES / f"{name}.eml").read_bytes())
    assert run(parsed).kind == Kind.REQUEST


# --- bounces ----------------------------------------------------------------------------------


@pytest.mark.parametrize("envelope", ["", "<>", " <> "])
def test_null_envelope_sender_is_bounce(envelope: str) -> None:
    result = run(mail(), envelope)
    assert (result.kind, result.may_answer) == (Kind.BOUNCE, False)


def test_null_return_path_header_when_envelope_unknown() -> None:
    assert run(mail("Return-Path: <>"), None).kind == Kind.BOUNCE


@pytest.mark.parametrize(
    "sender",
    [
        "MAILER-DAEMON@mx.example.co.jp",
        "Mail Delivery System <Postmaster@example.jp>",
        "MAILER-DAEMON",
    ],
)
def test_daemon_sender_is_bounce(sender: str) -> None:
    assert run(mail(sender=sender)).kind == Kind.BOUNCE


RETURNED_MESSAGE = (
    b"Content-Type: message/rfc822\r\n\r\n"
    b"From: apply@mailbot.localhost\r\n"
    b"Message-ID: <receipt-1@mailbot.localhost>\r\n"
    b"Subject: x\r\n\r\nbody\r\n"
)
RETURNED_HEADERS = (
    b"Content-Type: text/rfc822-headers\r\n\r\n"
    b"Message-ID: <receipt-1@mailbot.localhost>\r\n"
    b"X-Original-Message-ID: <x-2@mailbot.localhost>\r\n"
)


def dsn(action: str = "failed", returned: bytes = RETURNED_MESSAGE) -> bytes:
    """A Postfix-style RFC 3464 DSN for a receipt mail of ours."""
    return (
        b"From: Mail Delivery Subsystem <bounces@relay.example.net>\r\n"
        b"To: apply@mailbot.localhost\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type="delivery-status"; boundary="R"\r\n\r\n'
        b"--R\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        b"--R\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; relay.example.net\r\n"
        b"Original-Envelope-Id: receipt-1+40mailbot.localhost\r\n\r\n"
        b"Final-Recipient: rfc822; kato@example.co.jp\r\n"
        b"Action: " + action.encode() + b"\r\nStatus: 5.1.1\r\n\r\n"
        b"--R\r\n" + returned + b"--R--\r\n"
    )  # fmt: skip


def test_multipart_report_delivery_status_is_bounce() -> None:
    result = run(parse_mail(dsn()))
    assert result.kind == Kind.BOUNCE
    assert "delivery-status" in result.reason


def test_x_failed_recipients_is_bounce() -> None:
    assert run(mail("X-Failed-Recipients: kato@example.co.jp")).kind == Kind.BOUNCE


def test_bounced_message_ids_from_message_rfc822_and_envid() -> None:
    assert bounced_message_ids(parse_mail(dsn())) == ["<receipt-1@mailbot.localhost>"]


def test_bounced_message_ids_from_rfc822_headers() -> None:
    ids = bounced_message_ids(parse_mail(dsn(returned=RETURNED_HEADERS)))
    assert ids == ["<receipt-1@mailbot.localhost>", "<x-2@mailbot.localhost>"]


def test_delayed_dsn_reports_no_bounced_ids() -> None:
    parsed = parse_mail(dsn(action="delayed"))
    assert run(parsed).kind == Kind.BOUNCE  # still never answered
    assert bounced_message_ids(parsed) == []


def returned_original(sender: str) -> bytes:
    outer = MIMEMultipart()
    outer["From"] = sender
    outer["To"] = INTAKE
    outer.attach(MIMEText("宛先不明のため配信できませんでした。", "plain", "utf-8"))
    original = MIMEText("本文", "plain", "utf-8")
    original["Message-ID"] = "<receipt-9@mailbot.localhost>"
    outer.attach(MIMEMessage(original))
    return outer.as_bytes()


def test_non_standard_bounce_with_attached_original() -> None:
    parsed = parse_mail(returned_original("MAILER-DAEMON@docomo.ne.jp"))
    assert run(parsed).kind == Kind.BOUNCE
    assert bounced_message_ids(parsed) == ["<receipt-9@mailbot.localhost>"]


def test_no_bounced_ids_for_forwarded_mail() -> None:
    assert bounced_message_ids(parse_mail(returned_original("kato@example.co.jp"))) == []


# --- auto-replies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: auto-replied",
        "Auto-Submitted: auto-generated; owner-email=a@b",
        "Precedence: bulk",
        "Precedence: junk",
        "Precedence: list",
        "X-Autoreply: yes",
        "X-Autorespond: 1",
        "X-Auto-Response-Suppress: All",
        "List-Id: <users.example.jp>",
        "List-Unsubscribe: <mailto:leave@example.jp>",
    ],
)
def test_auto_reply_signals(header: str) -> None:
    result = run(mail(header, subject="不在通知: 利用者ID廃止申込"))
    assert (result.kind, result.may_answer) == (Kind.AUTO_REPLY, False)


def test_auto_submitted_no_is_a_person() -> None:
    assert run(mail("Auto-Submitted: no")).kind == Kind.REQUEST


def test_read_receipt_is_auto_reply() -> None:
    raw = (
        b"From: kato@example.co.jp\r\nTo: apply@mailbot.localhost\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/report; report-type=disposition-notification; boundary=R\r\n"
        b"\r\n--R\r\nContent-Type: text/plain\r\n\r\nread\r\n--R--\r\n"
    )
    assert run(parse_mail(raw)).kind == Kind.AUTO_REPLY


# --- own addresses ----------------------------------------------------------------------------


def test_mail_to_another_own_address_is_reply() -> None:
    result = run(mail(to="reply+abc123@MAILBOT.localhost", subject="Re: 【受付】180011A"))
    assert (result.kind, result.may_answer) == (Kind.REPLY, True)


def test_delivered_to_decides_over_cc() -> None:
    parsed = mail("Delivered-To: review@mailbot.localhost", to=f"x@example.jp, {INTAKE}")
    assert run(parsed).kind == Kind.REPLY


def test_foreign_delivered_to_from_an_earlier_hop_is_ignored() -> None:
    parsed = mail("Delivered-To: kato@gmail.com", to="reply+abc@mailbot.localhost")
    assert run(parsed).kind == Kind.REPLY
    assert run(mail("Delivered-To: kato@gmail.com")).reason == "addressed to the intake address"


@pytest.mark.parametrize(
    "sender",
    [
        INTAKE,
        "apply+bounce@mailbot.localhost",
        "APPLY+t12345@MAILBOT.LOCALHOST",
        "Mailbot <Apply+Bounce@Mailbot.Localhost>",
    ],
)
def test_own_addresses_as_sender_are_other(sender: str) -> None:
    # The intake address and every +tag of it, in any case: answering would mail ourselves.
    result = run(mail(sender=sender))
    assert (result.kind, result.may_answer) == (Kind.OTHER, False)


def test_a_lookalike_of_the_intake_address_is_not_ours() -> None:
    assert run(mail(sender="applyx+bounce@mailbot.localhost")).kind == Kind.REQUEST
    assert run(mail(sender="apply+bounce@mailbot.example.net")).kind == Kind.REQUEST


def test_no_sender_is_other() -> None:
    raw = b"To: apply@mailbot.localhost\r\nSubject: x\r\n\r\nbody\r\n"
    assert run(parse_mail(raw)).kind == Kind.OTHER


def test_bcc_to_intake_is_still_request() -> None:
    result = run(mail(to="someone@example.co.jp"))
    assert result.kind == Kind.REQUEST and "Bcc" in result.reason


# --- help -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    ["help", "HELP", "Re: Help", "ＨＥＬＰ", "ヘルプ", "ﾍﾙﾌﾟ", "【ヘルプ】", "Fwd: 転送： ヘ ル プ"],
)
def test_help_subject(subject: str) -> None:
    assert run(mail(subject=subject)).kind == Kind.HELP


def test_help_word_inside_a_longer_subject_is_not_help() -> None:
    assert run(mail(subject="ヘルプデスク経由の申込")).kind == Kind.REQUEST


@pytest.mark.parametrize(
    "body", ["", "\r\n  \r\n", "\u3000\r\n", "\r\n-- \r\n加藤 一郎\r\n株式会社テスト\r\n"]
)
def test_empty_or_signature_only_body_is_help(body: str) -> None:
    assert run(mail(body=body)).kind == Kind.HELP


def test_empty_body_with_attachment_is_request() -> None:
    outer = MIMEMultipart()
    outer["From"] = "yamada@example.co.jp"
    outer["To"] = INTAKE
    outer["Subject"] = "申込"
    outer.attach(MIMEText("", "plain", "utf-8"))
    csv = MIMEApplication("項目,内容\r\n".encode("cp932"), "octet-stream")
    csv.add_header("Content-Disposition", "attachment", filename="申込書.csv")
    outer.attach(csv)
    assert run(parse_mail(outer.as_bytes())).kind == Kind.REQUEST


# --- 契約内容確認 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        "契約内容確認",
        "契約内容",
        "【契約内容確認】",
        "Re: 契約内容の確認",
        "Contract",
        "ＣＯＮＴＲＡＣＴ",
    ],
)
def test_contract_subject_even_with_an_empty_body(subject: str) -> None:
    result = run(mail(subject=subject, body=""))
    assert result.kind == Kind.CONTRACT and result.may_answer


def test_contract_on_the_first_written_line() -> None:
    body = "\r\n　契約内容確認\r\n\r\nお世話になっております。山田です。\r\n"
    assert run(mail(subject="お願い", body=body)).kind == Kind.CONTRACT


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("契約内容確認書の件", REQUEST_BODY),  # the word inside a longer subject
        ("Re: 【NSS】契約内容のお知らせ", REQUEST_BODY),  # the marked form sent back
        ("申込", "お世話になります。\r\n契約内容確認\r\n"),  # not the first line
    ],
)
def test_not_contract(subject: str, body: str) -> None:
    assert run(mail(subject=subject, body=body)).kind == Kind.REQUEST


def test_help_subject_wins_over_a_contract_first_line() -> None:
    assert run(mail(subject="ヘルプ", body="契約内容確認")).kind == Kind.HELP


def test_auto_reply_asking_for_the_contract_is_never_answered() -> None:
    auto = mail("Auto-Submitted: auto-replied", subject="契約内容確認", body="")
    assert run(auto).kind == Kind.AUTO_REPLY


def test_normalise_subject() -> None:
    assert normalise_subject("RE: Fw: 【ＮＳＳ】 ＨＥＬＰ") == "nsshelp"
