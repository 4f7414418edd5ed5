"""mailbot.mime against the traps of docs/japanese-mail.md, with messages built as real mailers do.

Behaviour of the stdlib email package differs between Python versions; these tests are pinned
to CPython 3.11 (the project's version).
"""

from __future__ import annotations

import base64
import sys
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.mime import (
    UnreadableMail,
    decode_header_value,
    decode_part_text,
    html_to_text,
    parse_header_params,
    parse_headers,
    parse_mail,
    safe_filename,
)
from tests.support.japanese import b_word, to_jis

SAMPLES = Path(__file__).resolve().parents[1] / "samples"  # docs/japanese-mail.md#the-sample-mails
CP50220 = "①②Ⅰ㈱髙﨑"


def test_pinned_python() -> None:
    assert sys.version_info[:2] == (3, 11)


def message(headers: dict[str, bytes], body: bytes) -> bytes:
    lines = [name.encode() + b": " + value for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def test_encoder_matches_python_for_plain_jis() -> None:
    assert to_jis("利用者ID").decode("iso2022_jp") == "利用者ID"


# --- decode_part_text -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label", ["ISO-2022-JP", "iso-2022-jp", "csISO2022JP", "ISO-2022-JP-1", "iso-2022-jp-2"]
)
def test_iso2022jp_labels_keep_cp50220_characters(label: str) -> None:
    assert decode_part_text(to_jis(f"株式会社{CP50220}様"), label) == f"株式会社{CP50220}様"


def test_python_codec_fails_where_ours_succeeds() -> None:
    # The trap itself: the stdlib codec rejects what Windows sends.
    with pytest.raises(UnicodeDecodeError):
        to_jis("髙").decode("iso2022_jp")
    assert decode_part_text(to_jis("髙"), "iso-2022-jp") == "髙"


def test_half_width_kana_escape() -> None:
    raw = to_jis("ｶﾌﾞｼｷｶﾞｲｼｬ ﾃｽﾄ")
    assert b"\x1b(I" in raw
    assert decode_part_text(raw, "ISO-2022-JP") == "ｶﾌﾞｼｷｶﾞｲｼｬ ﾃｽﾄ"


def test_so_si_kana_and_old_escapes() -> None:
    # CP50222 shifts kana with SO/SI; ESC $ @ is JIS C 6226-1978; ESC ( J is JIS-Roman.
    raw = b"\x1b(J\x0e\x31\x32\x0f\x1b$@\x30\x21\x1b(Bok"
    assert decode_part_text(raw, "iso-2022-jp") == "ｱｲ亜ok"


def test_utf8_labelled_iso2022jp() -> None:
    assert decode_part_text("申込者 ① 髙".encode(), "ISO-2022-JP") == "申込者 ① 髙"


def test_cp932_labelled_iso2022jp_without_escapes() -> None:
    assert decode_part_text("申込者".encode("cp932"), "iso-2022-jp") == "申込者"


@pytest.mark.parametrize(
    "label", ["Shift_JIS", "shift-jis", "sjis", "x-sjis", "windows-31j", "MS932", "cp932"]
)
def test_shift_jis_labels_decode_as_cp932(label: str) -> None:
    raw = b"\x81\x60" + b"\x87\x40" + b"\xfa\x40" + b"\xed\x40" + "髙﨑".encode("cp932")
    text = decode_part_text(raw, label)
    assert text == "\uff5e①ⅰ纊髙﨑"  # ～ is FULLWIDTH TILDE, not 〜 WAVE DASH
    assert "\u301c" not in text


def test_missing_charset_cp932_bytes() -> None:
    assert decode_part_text("利用者ID：１ＡＮＡＣＡ０Ａ ①".encode("cp932"), None) == (
        "利用者ID：１ＡＮＡＣＡ０Ａ ①"
    )


def test_missing_charset_utf8_bytes() -> None:
    assert decode_part_text("利用者ID：髙".encode(), None) == "利用者ID：髙"


def test_missing_charset_jis_bytes() -> None:
    assert decode_part_text(to_jis("㈱髙"), None) == "㈱髙"


def test_us_ascii_label_with_raw_jis() -> None:
    assert decode_part_text(to_jis("申込"), "us-ascii") == "申込"


def test_utf8_label_on_cp932_bytes_falls_back() -> None:
    assert decode_part_text("申込書".encode("cp932"), "utf-8") == "申込書"


def test_unknown_label_is_a_guess_not_an_error() -> None:
    assert decode_part_text("申込書".encode(), "x-klingon") == "申込書"
    assert decode_part_text("申込書".encode("cp932"), "base64") == "申込書"  # not a text codec


def test_euc_jp_with_nec_extension() -> None:
    assert decode_part_text("申込".encode("euc_jp"), "EUC-JP") == "申込"
    assert decode_part_text(b"\xad\xa1", "euc-jp") == "①"  # CP51932 row 13


def test_damaged_utf8_stays_utf8() -> None:
    raw = "利用者IDの廃止を申し込みます".encode() + b"\xe5\x88"  # cut off mid-character
    assert decode_part_text(raw, "utf-8") == "利用者IDの廃止を申し込みます\ufffd"
    assert decode_part_text(raw, None) == "利用者IDの廃止を申し込みます\ufffd"


def test_last_resort_never_raises() -> None:
    assert isinstance(decode_part_text(bytes(range(256)) * 3, None), str)


# --- headers ----------------------------------------------------------------------------------


def test_adjacent_encoded_words_join_without_whitespace() -> None:
    value = (b_word("株式会社") + b"\r\n " + b_word(CP50220)).decode()
    assert decode_header_value(value) == f"株式会社{CP50220}"


def test_utf8_character_split_across_words() -> None:
    raw = "髙".encode()
    first = base64.b64encode(raw[:1]).decode()
    second = base64.b64encode(raw[1:]).decode()
    assert decode_header_value(f"=?utf-8?B?{first}?= =?UTF-8?B?{second}?=") == "髙"


def test_shift_jis_q_word_and_literal_text() -> None:
    q = "".join(f"={b:02X}" for b in "～申込".encode("cp932"))
    assert decode_header_value(f"Re: =?Shift_JIS?Q?{q}?= (2)") == "Re: \uff5e申込 (2)"


def test_broken_word_left_as_text() -> None:
    assert decode_header_value("=?utf-8?Q?=E3?= x") == "\ufffd x"
    assert decode_header_value("=?utf-8?B?!!!?=") == ""


# --- whole messages: charsets and transfer encodings -----------------------------------------


def jis_mail(body: str) -> bytes:
    return message(
        {
            "From": b_word("髙﨑 ㈱太郎") + b" <Takasaki@Example.CO.JP>",
            "To": b"apply@mailbot.localhost",
            "Subject": b_word(f"廃止申込{CP50220}"),
            "Message-ID": b"<a1@example.co.jp>",
            "Date": b"Fri, 28 Nov 2025 12:20:00 +0900",
            "MIME-Version": b"1.0",
            "Content-Type": b'text/plain; charset="ISO-2022-JP"',
            "Content-Transfer-Encoding": b"7bit",
        },
        to_jis(body).replace(b"\n", b"\r\n"),
    )


def test_iso2022jp_body_subject_and_from_name() -> None:
    mail = parse_mail(jis_mail("申込者：髙﨑\n会社：㈱テスト\n番号：①Ⅰ\n"))
    assert mail.text == "申込者：髙﨑\n会社：㈱テスト\n番号：①Ⅰ\n"
    assert mail.subject == f"廃止申込{CP50220}"
    assert mail.from_name == "髙﨑 ㈱太郎"
    assert mail.from_address == "takasaki@example.co.jp"
    assert mail.to_addresses == ("apply@mailbot.localhost",)
    assert mail.message_id == "<a1@example.co.jp>"
    assert mail.date is not None and mail.date.utcoffset() is not None
    assert mail.header("subject") == f"廃止申込{CP50220}"
    assert mail.defects == ()


def test_quoted_encoded_word_in_display_name() -> None:
    raw = message(
        {"From": b'"' + b_word("髙橋") + b'" <t@example.jp>', "Subject": b"x"}, b"body\r\n"
    )
    mail = parse_mail(raw)
    assert (mail.from_name, mail.from_address) == ("髙橋", "t@example.jp")


def test_crlf_smuggled_in_encoded_word_is_flattened() -> None:
    raw = message({"Subject": b_word("申込\r\nBcc: x@evil.example", "utf-8")}, b"x")
    assert parse_mail(raw).subject == "申込 Bcc: x@evil.example"


def test_raw_jis_header_without_encoded_word() -> None:
    raw = message({"Subject": to_jis("髙﨑の申込"), "From": to_jis("㈱テスト") + b" <t@x.jp>"}, b"")
    mail = parse_mail(raw)
    assert (mail.subject, mail.from_name) == ("髙﨑の申込", "㈱テスト")


def test_jis_x0212_segment_uses_python_codec() -> None:
    assert decode_part_text(b"\x1b$(D\x30\x21\x1b(B!", "iso-2022-jp-1") == "丂!"


def test_raw_8bit_headers_are_guessed() -> None:
    raw = message(
        {"From": "佐藤 <s@example.jp>".encode("cp932"), "Subject": "申込①".encode()}, b"x"
    )
    mail = parse_mail(raw)
    assert (mail.subject, mail.from_name) == ("申込①", "佐藤")


def test_quoted_printable_utf8() -> None:
    part = MIMEText("利用者ID：1ANACA0A\n", "plain", "utf-8")
    part.replace_header("Content-Transfer-Encoding", "quoted-printable")
    part.set_payload("=E5=88=A9=E7=94=A8=E8=80=85ID=EF=BC=9A1ANACA0A\n")
    assert parse_mail(part.as_bytes()).text == "利用者ID：1ANACA0A\n"


def test_base64_iso2022jp_body() -> None:
    body = base64.encodebytes(to_jis("㈱髙﨑\r\n"))
    raw = message(
        {
            "Content-Type": b"text/plain; charset=iso-2022-jp",
            "Content-Transfer-Encoding": b"base64",
        },
        body,
    )
    assert parse_mail(raw).text == "㈱髙﨑\n"


def test_missing_charset_in_message_cp932_and_utf8() -> None:
    for data in ("申込①\r\n".encode("cp932"), "申込①\r\n".encode()):
        raw = message({"Content-Type": b"text/plain", "Content-Transfer-Encoding": b"8bit"}, data)
        assert parse_mail(raw).text == "申込①\n"


def test_lying_label_is_recorded_as_defect() -> None:
    raw = message({"Content-Type": b"text/plain; charset=iso-2022-jp"}, "申込".encode())
    mail = parse_mail(raw)
    assert mail.text == "申込"
    assert any("iso-2022-jp" in defect for defect in mail.defects)


def test_format_flowed_is_unwrapped() -> None:
    raw = message(
        {"Content-Type": b"text/plain; charset=utf-8; format=flowed; delsp=yes"},
        "変更する理由：事業所の統 \r\n合により\r\n> quoted \r\n> line\r\n".encode(),
    )
    assert parse_mail(raw).text == "変更する理由：事業所の統合により\n> quotedline\n"


# --- HTML ------------------------------------------------------------------------------------


def test_html_only_mail() -> None:
    html = (
        "<html><head><title>件名</title><style>p{color:red}</style></head><body>"
        "<script>alert('x')</script><p>利用者ID：1ANACA0A</p><div>理由&nbsp;：統合&amp;削減</div>"
        "<table><tr><td>申込担当者</td><td>髙﨑</td></tr></table>a<br>b</body></html>"
    )
    part = MIMEText(html, "html", "utf-8")
    mail = parse_mail(part.as_bytes())
    assert mail.text_from_html
    assert "alert" not in mail.text and "color" not in mail.text and "件名" not in mail.text
    lines = mail.text.split("\n")
    assert "利用者ID：1ANACA0A" in lines
    assert "理由 ：統合&削減" in lines
    assert "申込担当者\t髙﨑" in lines  # cells apart by a tab, as the body parser reads them
    assert lines[-2:] == ["a", "b"]


def test_alternative_prefers_plain() -> None:
    outer = MIMEMultipart("alternative")
    outer.attach(MIMEText("プレーン", "plain", "utf-8"))
    outer.attach(MIMEText("<p>HTML</p>", "html", "utf-8"))
    mail = parse_mail(outer.as_bytes())
    assert (mail.text, mail.text_from_html) == ("プレーン", False)


def test_html_meta_charset_used_when_part_has_none() -> None:
    body = '<meta charset="shift_jis"><p>～申込</p>'.encode("cp932")
    raw = message({"Content-Type": b"text/html"}, body)
    assert parse_mail(raw).text == "\uff5e申込"


def test_html_to_text_survives_garbage() -> None:
    assert isinstance(html_to_text("<<!><![CDATA[<p</scr"), str)


# --- attachments -----------------------------------------------------------------------------


def mixed(*parts: bytes, body: bytes = b"see attached") -> bytes:
    chunks = [b"--BND\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + body + b"\r\n"]
    chunks += [b"--BND\r\n" + part + b"\r\n" for part in parts]
    head = b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="BND"\r\n\r\n'
    return head + b"".join(chunks) + b"--BND--\r\n"


def csv_part(disposition: bytes, content_type: bytes = b"text/csv") -> bytes:
    return (
        b"Content-Type: " + content_type + b"\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: " + disposition + b"\r\n\r\n"
        + base64.encodebytes("項目,内容\r\n".encode("cp932"))
    )  # fmt: skip


def test_rfc2047_in_quoted_filename() -> None:
    part = csv_part(b'attachment; filename="' + b_word("髙﨑㈱申込書.csv") + b'"')
    (attachment,) = parse_mail(mixed(part)).attachments
    assert attachment.filename == "髙﨑㈱申込書.csv"
    assert attachment.payload.decode("cp932") == "項目,内容\r\n"
    assert attachment.size == len(attachment.payload) and not attachment.truncated


def test_rfc2231_continuations_iso2022jp_split_inside_a_character() -> None:
    encoded = "".join(f"%{b:02X}" for b in to_jis("髙﨑①申込書.csv"))
    cut = encoded.index("%", 20) + 3  # splits a two-byte JIS code between sections
    disposition = (
        f"attachment;\r\n filename*0*=iso-2022-jp'ja'{encoded[:cut]};\r\n"
        f" filename*1*={encoded[cut:]}"
    ).encode()
    (attachment,) = parse_mail(mixed(csv_part(disposition))).attachments
    assert attachment.filename == "髙﨑①申込書.csv"


def test_rfc2231_continuations_utf8_with_plain_section() -> None:
    encoded = "".join(f"%{b:02X}" for b in "廃止申込書".encode())
    disposition = (
        f"attachment; filename*0*=UTF-8''{encoded[:12]}; filename*1*={encoded[12:]};"
        ' filename*2=".csv"; filename="fallback.csv"'
    ).encode()
    (attachment,) = parse_mail(mixed(csv_part(disposition))).attachments
    assert attachment.filename == "廃止申込書.csv"


def test_content_type_name_is_the_fallback() -> None:
    part = csv_part(b"attachment", b'application/octet-stream; name="' + b_word("申込.csv") + b'"')
    (attachment,) = parse_mail(mixed(part)).attachments
    assert (attachment.filename, attachment.content_type) == (
        "申込.csv",
        "application/octet-stream",
    )


def test_filename_has_no_path_or_control_characters() -> None:
    assert safe_filename("C:\\Users\\kato\\申込書.csv") == "申込書.csv"
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("a\x00b\r\n\u202ecod.exe") == "abcod.exe"
    assert safe_filename("..") is None
    assert safe_filename("テ\u3099.csv") == "デ.csv"  # NFC: macOS sends decomposed marks
    long_name = safe_filename("あ" * 300 + ".xlsx")
    assert long_name is not None and len(long_name) == 255 and long_name.endswith(".xlsx")


def test_oversize_attachment_kept_as_metadata() -> None:
    outer = MIMEMultipart()
    outer.attach(MIMEText("本文", "plain", "utf-8"))
    big = MIMEApplication(b"x" * 3000, Name="big.pdf")
    big.add_header("Content-Disposition", "attachment", filename="big.pdf")
    outer.attach(big)
    small = MIMEApplication(b"y" * 10)
    small.add_header("Content-Disposition", "attachment", filename="small.bin")
    outer.attach(small)
    mail = parse_mail(outer.as_bytes(), max_attachment_bytes=1000)
    big_att, small_att = mail.attachments
    assert (big_att.filename, big_att.truncated, big_att.payload) == ("big.pdf", True, b"")
    assert big_att.size == 3000
    assert (small_att.truncated, small_att.payload) == (False, b"y" * 10)
    assert mail.text == "本文"


def test_text_attachment_is_not_body() -> None:
    outer = MIMEMultipart()
    outer.attach(MIMEText("本文", "plain", "utf-8"))
    note = MIMEText("添付", "plain", "utf-8")
    note.add_header("Content-Disposition", "attachment", filename="memo.txt")
    outer.attach(note)
    mail = parse_mail(outer.as_bytes())
    assert mail.text == "本文"
    assert [a.filename for a in mail.attachments] == ["memo.txt"]
    assert mail.attachments[0].charset == "utf-8"


def test_parse_header_params_mixed() -> None:
    params = parse_header_params('text/plain; charset="Shift_JIS"; format=flowed; x="a;b"')
    assert params == {"charset": "Shift_JIS", "format": "flowed", "x": "a;b"}


# --- the shared samples ----------------------------------------------------------------------


def test_sample_iso2022jp_body() -> None:
    mail = parse_mail((SAMPLES / "request-body-iso2022jp.eml").read_bytes())
    assert mail.subject == "利用者ID廃止申込（大阪事業所）"
    assert (mail.from_name, mail.from_address) == ("加藤 一郎", "kato@example.co.jp")
    assert "■廃止する利用者ID：\n２ＢＸＹＺ００１\n２ＢＸＹＺ００２" in mail.text
    assert "■利用開始希望日：令和８年１２月２２日" in mail.text
    assert mail.defects == ()


def test_sample_utf8_body() -> None:
    mail = parse_mail((SAMPLES / "request-body-utf8.eml").read_bytes())
    assert mail.subject == "利用者ID廃止申込"
    assert mail.from_name == "山田 太郎"
    assert "廃止する利用者ID: 1ANACA0A, 1ANACA0B\n" in mail.text
    assert "\r" not in mail.text


def test_sample_csv_cp932() -> None:
    mail = parse_mail((SAMPLES / "request-csv-cp932.eml").read_bytes())
    assert mail.subject == "利用者ID廃止申込（添付ファイル）"
    assert mail.text.startswith("お世話になっております。\n")
    (attachment,) = mail.attachments
    assert attachment.filename == "廃止申込書.csv"
    assert attachment.content_type == "text/csv"
    assert "廃止する利用者ID,1ANAC001" in attachment.payload.decode("cp932")


# --- DSN parts for bounce handling ------------------------------------------------------------


def test_delivery_status_and_embedded_headers() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.jp\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
        b"--R\r\nContent-Type: text/plain\r\n\r\nUndeliverable\r\n"
        b"--R\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Original-Envelope-Id: out-1\r\nReporting-MTA: dns; mx.example.jp\r\n\r\n"
        b"Final-Recipient: rfc822; a@example.jp\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        b"--R\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        b"Message-ID: <out-1@mailbot.localhost>\r\nSubject: x\r\n\r\n"
        b"--R--\r\n"
    )
    mail = parse_mail(raw)
    assert mail.text == "Undeliverable"
    assert mail.delivery_status[0]["original-envelope-id"] == ("out-1",)
    assert mail.delivery_status[1]["action"] == ("failed",)
    assert mail.embedded_headers[0]["message-id"] == ("<out-1@mailbot.localhost>",)


# --- never raise ------------------------------------------------------------------------------

_FRAGMENTS = [
    b"\r\n",
    b"\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: message/delivery-status\r\n",
    b"Content-Type: text/html; charset=x-sjis\r\n",
    b"Content-Type: text/plain; charset=iso-2022-jp\r\n",
    b'Content-Type: text/plain; charset="x\x00"\r\n',
    b"Content-Type: message/rfc822; charset=idna\r\n",
    b"Content-Type: text/plain; charset*=utf-8''%FF\r\n",
    b"\x80\xff",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Transfer-Encoding: x-uuencode\r\n",
    b"Content-Disposition: attachment; filename*0*=iso-2022-jp''%1B%24B; filename*1*=%30\r\n",
    b'Content-Disposition: attachment; filename="=?utf-8?B?5ZCN?="\r\n',
    b"Subject: =?ISO-2022-JP?B?GyRCLSEbKEI=?= =?x?q?=ff?=\r\n",
    b'From: =?utf-8?b?5bGx55Sw?= <a@b>, <<>>, "\r\n',
    b"Date: Mon, 99 Foo 20000 99:99:99 +9999\r\n",
    b"--b\r\n",
    b"--b--\r\n",
    b"\x1b$B",
    b"\x1b(I",
    b"\x1b$(D",
    b"\x0e\x0f",
    b"<script>",
    b"=?",
    b"?=",
]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    mail = parse_mail(raw, max_attachment_bytes=100)
    assert isinstance(mail.text, str)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS) | st.binary(max_size=12), max_size=60))
def test_mime_shaped_garbage_never_raises(pieces: list[bytes]) -> None:
    mail = parse_mail(b"".join(pieces), max_attachment_bytes=10)
    assert isinstance(mail.text, str)


def nested(depth: int) -> bytes:
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    return head + b"Content-Type: text/plain\r\n\r\nhi\r\n"


def test_nul_in_charset_label_with_8bit_body() -> None:
    # compat32's get_payload() (without decode=True) raised ValueError on this.
    mail = parse_mail(b'Content-Type: text/html; charset="x\x00"\r\n\r\n\x80abc')
    assert mail.text.endswith("abc")


def test_deep_nesting_is_a_defect() -> None:
    assert any("nesting" in defect for defect in parse_mail(nested(60)).defects)


def test_deep_nesting_over_many_short_lines_is_refused_before_the_parser_works_through_it() -> None:
    # 800 levels and 100,000 lines: the stdlib parser would test each line against 800
    # boundaries (seconds; minutes at 10 MB). Refused from a count of the declarations.
    raw = b"From: yamada@example.co.jp\r\n" + nested(800) + b"x\r\n" * 100_000
    with pytest.raises(UnreadableMail, match="800 multipart boundaries over 102,405 lines"):
        parse_mail(raw)


def test_a_real_mail_with_many_multiparts_and_a_large_attachment_is_read() -> None:
    # A forwarded thread: 60 sibling multipart/alternative parts, and 1 MB of base64.
    alternatives = b"".join(
        b"--outer\r\nContent-Type: multipart/alternative; boundary=alt%d\r\n\r\n"
        b"--alt%d\r\nContent-Type: text/plain\r\n\r\nmessage %d\r\n--alt%d--\r\n" % (n, n, n, n)
        for n in range(60)
    )
    data = base64.encodebytes(bytes(range(256)) * 4096).replace(b"\n", b"\r\n")
    raw = (
        b"From: yamada@example.co.jp\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n"
        + alternatives
        + b"--outer\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=a.bin"
        b"\r\n\r\n" + data + b"--outer--\r\n"
    )
    mail = parse_mail(raw)
    assert "message 59" in mail.text
    assert [a.size for a in mail.attachments] == [1024 * 1024]


def test_nesting_the_stdlib_parser_cannot_follow_is_unreadable_not_an_empty_mail() -> None:
    # The stdlib parser recurses per level and gives up near a thousand. That message is not
    # turned into a mail without a From (which nobody would answer or see): it is raised, and
    # the worker quarantines it.
    raw = b"From: yamada@example.co.jp\r\n" + nested(1000)
    with pytest.raises(UnreadableMail, match="nested too deeply"):
        parse_mail(raw)
    headers = parse_headers(raw)  # what the worker still reads, to tell the sender
    assert headers.from_address == "yamada@example.co.jp"
    assert headers.content_type == "multipart/mixed" and headers.text == ""
