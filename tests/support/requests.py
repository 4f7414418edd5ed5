"""Request mails as real mailers build them, for the demo registry (examples/registry-demo.csv).

Demo registry: TYO01 (contacts yamada@, sato@) holds 1ANACA0A, 1ANACA0B, 1ANAC001;
OSK01 (contacts kato@, ito@) holds 1ANACA0C, 2BXYZ001, 2BXYZ002. 1ANAC is shared.
"""

from __future__ import annotations

import base64
import quopri
import uuid
from datetime import date

from tests.support.japanese import b_word, to_jis

YAMADA = "yamada@example.co.jp"
SATO = "sato@example.co.jp"
KATO = "kato@example.co.jp"
ITO = "ito@example.co.jp"
OUTSIDER = "mallory@example.net"
INTAKE = "apply@mailbot.localhost"


def form(
    *user_ids: str,
    start: date | str,
    office_code: str | None = "TYO01",
    applicant: str = "山田 太郎",
    phone: str = "03-1234-5678",
    manager: str = "佐藤 花子",
    manager_email: str = SATO,
    reason: str = "事業所の統合により端末を削減するため",
    remarks: str | None = None,
    extra: str = "",
) -> str:
    lines = []
    if office_code:
        lines.append(f"■事業所コード：{office_code}")
    lines.append("■廃止する利用者ID：" + ", ".join(user_ids or ("1ANACA0A",)))
    lines += [
        f"■利用開始希望日：{start if isinstance(start, str) else start.strftime('%Y年%m月%d日')}",
        f"■変更する理由：{reason}",
        f"■申込担当者：{applicant}",
        f"■申込担当者電話番号：{phone}",
        f"■管理責任者：{manager}",
        f"■管理責任者メールアドレス：{manager_email}",
    ]
    if remarks is not None:
        lines.append(f"■備考：{remarks}")
    return "\r\n".join(lines) + "\r\n" + extra


def _headers(
    sender: str, sender_name_word: bytes, subject_word: bytes, extra: dict[str, str]
) -> list[bytes]:
    headers = [
        b"From: " + sender_name_word + b" <" + sender.encode() + b">",
        b"To: " + INTAKE.encode(),
        b"Subject: " + subject_word,
        b"Date: Sat, 28 Nov 2026 10:00:00 +0900",
        b"Message-ID: <" + uuid.uuid4().hex.encode() + b"@example.co.jp>",
        b"MIME-Version: 1.0",
    ]
    headers += [f"{name}: {value}".encode() for name, value in extra.items()]
    return headers


def mail(
    body: str,
    *,
    sender: str = YAMADA,
    sender_name: str = "山田 太郎",
    subject: str = "利用者ID廃止申込",
    encoding: str = "utf-8-base64",
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """A text/plain request. ``encoding`` picks the trap:

    ``utf-8-base64``, ``utf-8-qp``, ``utf-8-8bit``, ``iso-2022-jp`` (CP50220 as Windows sends it),
    ``utf-8-labelled-iso-2022-jp`` (a lying label), ``shift_jis`` (CP932 under a Shift_JIS label),
    ``cp932-no-charset`` (Outlook omitting charset=).
    """
    extra = dict(extra_headers or {})
    if encoding == "iso-2022-jp":
        name_word, subject_word = b_word(sender_name), b_word(subject)
        content_type, cte, payload = 'text/plain; charset="ISO-2022-JP"', "7bit", to_jis(body)
    else:
        name_word, subject_word = b_word(sender_name, "UTF-8"), b_word(subject, "UTF-8")
        content_type, cte, payload = _body_parts(body, encoding)
    headers = _headers(sender, name_word, subject_word, extra)
    headers += [
        f"Content-Type: {content_type}".encode(),
        f"Content-Transfer-Encoding: {cte}".encode(),
    ]
    return b"\r\n".join(headers) + b"\r\n\r\n" + payload


def _body_parts(body: str, encoding: str) -> tuple[str, str, bytes]:
    if encoding == "utf-8-base64":
        return 'text/plain; charset="UTF-8"', "base64", _b64(body.encode("utf-8"))
    if encoding == "utf-8-qp":
        return (
            'text/plain; charset="UTF-8"',
            "quoted-printable",
            quopri.encodestring(body.encode("utf-8")),
        )
    if encoding == "utf-8-8bit":
        return 'text/plain; charset="UTF-8"', "8bit", body.encode("utf-8")
    if encoding == "utf-8-labelled-iso-2022-jp":
        return 'text/plain; charset="ISO-2022-JP"', "8bit", body.encode("utf-8")
    if encoding == "shift_jis":
        return 'text/plain; charset="Shift_JIS"', "base64", _b64(body.encode("cp932"))
    if encoding == "cp932-no-charset":
        return "text/plain", "8bit", body.encode("cp932")
    raise ValueError(encoding)


def html_mail(body: str, *, sender: str = YAMADA) -> bytes:
    """HTML-only mail (web mail): the form inside <p> and <br>, plus a script that must not count."""
    html = (
        "<html><head><style>p{color:red}</style><script>var x='■備考：悪意';</script></head>"
        "<body><p>" + body.replace("\r\n", "<br>\r\n") + "</p></body></html>"
    )
    headers = _headers(sender, b_word("山田 太郎", "UTF-8"), b_word("申込", "UTF-8"), {})
    headers += [b'Content-Type: text/html; charset="UTF-8"', b"Content-Transfer-Encoding: base64"]
    return b"\r\n".join(headers) + b"\r\n\r\n" + _b64(html.encode("utf-8"))


def html_table_mail(body: str, *, sender: str = YAMADA) -> bytes:
    """HTML-only mail with the form pasted as a table: one row per field, label | value."""
    rows = "".join(
        "<tr><td>{}</td><td>{}</td></tr>".format(*line.lstrip("■").split("：", 1))
        for line in body.split("\r\n")
        if "：" in line
    )
    html = f"<html><body><p>よろしくお願いします。</p><table border=1>{rows}</table></body></html>"
    headers = _headers(sender, b_word("山田 太郎", "UTF-8"), b_word("申込", "UTF-8"), {})
    headers += [b'Content-Type: text/html; charset="UTF-8"', b"Content-Transfer-Encoding: base64"]
    return b"\r\n".join(headers) + b"\r\n\r\n" + _b64(html.encode("utf-8"))


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")
