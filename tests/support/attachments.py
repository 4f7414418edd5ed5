"""Requests as attachments, built the way Outlook and Thunderbird build them."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import re
import urllib.parse
import uuid
from collections.abc import Sequence

import openpyxl

from mailbot.blank_form import blank_form_xlsx
from tests.support.japanese import b_word, to_jis
from tests.support.requests import INTAKE, SATO, YAMADA

File = tuple[str, str, bytes]  # (file name, content type, bytes)

CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

FIELDS = {
    "事業所コード": "TYO01",
    "利用開始希望日": "2026/12/15",
    "変更する理由": "㈱髙島屋への事業譲渡のため",
    "申込担当者": "山田 太郎",
    "申込担当者電話番号": "03-1234-5678",
    "管理責任者": "佐藤 花子",
    "管理責任者メールアドレス": SATO,
}
IDS = ("1ANACA0A", "1ANACA0B")


def vertical_rows(ids: Sequence[str] = IDS, **changes: str) -> list[list[str]]:
    fields = {**FIELDS, **changes}
    rows = [["項目", "記入欄"], ["事業所コード", fields.pop("事業所コード")]]
    rows.append(["廃止する利用者ID", ids[0]])
    rows += [["", user_id] for user_id in ids[1:]]
    rows += [[label, value] for label, value in fields.items()]
    return rows


def csv_bytes(rows: list[list[str]], encoding: str = "cp932", delimiter: str = ",") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode(encoding)


def table_csv(ids: Sequence[str] = IDS, encoding: str = "utf-8-sig") -> bytes:
    header = ["事業所コード", "廃止する利用者ID", *list(FIELDS)[1:]]
    first = [FIELDS["事業所コード"], ids[0], *list(FIELDS.values())[1:]]
    rows = [header, first] + [["", user_id] + [""] * (len(header) - 2) for user_id in ids[1:]]
    return csv_bytes(rows, encoding)


def filled_blank_xlsx(ids: Sequence[str] = IDS, **changes: str) -> bytes:
    """The workbook `mailbot form --format xlsx` writes, filled in as an applicant would."""
    workbook = openpyxl.load_workbook(io.BytesIO(blank_form_xlsx()))
    sheet = workbook.active
    assert sheet is not None
    values = {**FIELDS, **changes}
    for row in sheet.iter_rows(min_col=1, max_col=2):
        label = row[0].value
        if label == "廃止する利用者ID":
            for offset, user_id in enumerate(ids):
                sheet.cell(row=row[0].row + offset, column=2, value=user_id)
        elif label == "利用開始希望日":
            row[1].value = dt.date(2026, 12, 15)  # Excel stores a typed date as a date
        elif label in values:
            row[1].value = values[str(label)]
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def json_bytes(ids: Sequence[str] = IDS) -> bytes:
    return json.dumps(
        {
            "office_code": "TYO01",
            "user_ids": list(ids),
            "desired_start_date": "2026-12-15",
            "reason": FIELDS["変更する理由"],
            "applicant_name": "山田 太郎",
            "applicant_phone": "03-1234-5678",
            "manager_name": "佐藤 花子",
            "manager_email": SATO,
        },
        ensure_ascii=False,
    ).encode("utf-8")


def _outlook_params(filename: str) -> tuple[str, str]:
    # Outlook and Japanese mailers: an RFC 2047 word inside the quoted parameter.
    word = b_word(filename).decode("ascii")
    return f'name="{word}"', f'attachment; filename="{word}"'


def _thunderbird_params(filename: str) -> tuple[str, str]:
    # Thunderbird: RFC 2231 continuations, percent-encoded UTF-8, split into pieces of about 30
    # characters. Like Thunderbird, never inside a %XX (a UTF-8 character may span two pieces).
    quoted = urllib.parse.quote(filename.encode("utf-8"), safe="")
    pieces = [""]
    for octet in re.findall(r"%[0-9A-F]{2}|.", quoted):
        if len(pieces[-1]) + len(octet) > 30:
            pieces.append("")
        pieces[-1] += octet
    continued = ";\r\n ".join(
        f"filename*{n}*={'UTF-8' + chr(39) * 2 if n == 0 else ''}{piece}"
        for n, piece in enumerate(pieces)
    )
    return "", f"attachment;\r\n {continued}"


def attachment_mail(
    files: Sequence[File],
    *,
    style: str = "outlook",
    sender: str = YAMADA,
    cover_letter: str = "お世話になっております。\r\n申込書を添付いたします。\r\nよろしくお願いいたします。",
) -> bytes:
    boundary = f"----={uuid.uuid4().hex}"
    parts = [
        f"--{boundary}\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"
        "Content-Transfer-Encoding: 7bit\r\n\r\n".encode()
        + to_jis(cover_letter)
        + b"\r\n"
    ]
    for filename, content_type, data in files:
        type_param, disposition = (
            _outlook_params(filename) if style == "outlook" else _thunderbird_params(filename)
        )
        content_type_line = f"{content_type}; {type_param}" if type_param else content_type
        encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
        parts.append(
            f"--{boundary}\r\nContent-Type: {content_type_line}\r\n"
            f"Content-Transfer-Encoding: base64\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
            + encoded
        )
    headers = (
        f"From: {b_word('山田 太郎').decode()} <{sender}>\r\nTo: {INTAKE}\r\n"
        f"Subject: {b_word('利用者ID廃止申込書の送付').decode()}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.co.jp>\r\n"
        "Date: Fri, 27 Nov 2026 10:00:00 +0900\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
    ).encode()
    return headers + b"".join(parts) + f"--{boundary}--\r\n".encode()
