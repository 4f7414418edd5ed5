"""The two printable documents of the guide's 申込内容参照 screen, as PDF (fpdf2).

* システムサービス利用契約変更承認通知 (approval notice): the customer keeps it; it exists only
  for an approved application and only on or after its start date (docs/domain.md rule 9).
* システムサービス利用契約変更申込書 (application form): what was applied for, printable at any
  time for the customer's own records (it is never mailed).

Data is read in one place, :func:`document_context`, and the PDFs are drawn from that frozen
snapshot, so the status page, the PDF routes and the CLI show the same facts. Japanese needs a
font with the glyphs: IPAex Gothic from the Debian package ``fonts-ipaexfont-gothic``
(embedded as a subset, so the PDF opens anywhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.enums import Align, WrapMode, XPos, YPos
from fpdf.fonts import FontFace
from sqlmodel import Session

from db.models import APPLIED, APPROVED, UNDER_REVIEW
from mailbot.applications import find_application
from mailbot.config import Settings
from mailbot.dates import ja_date
from mailbot.errors import BilingualError, MailbotError
from mailbot.normalize import ident_of, user_code_of
from mailbot.notify import application_context, network_ja

FONT_PACKAGE = "fonts-ipaexfont-gothic"
# Where Debian puts the font (the first path); the others are where older releases and other
# distributions' packages of the same font put it.
FONT_CANDIDATES = (
    Path("/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf"),
    Path("/usr/share/fonts/truetype/ipaexfont-gothic/ipaexg.ttf"),
    Path("/usr/share/fonts/ipaex-gothic/ipaexg.ttf"),
)
FONT = "ipaexg"
LABEL_WIDTH, VALUE_WIDTH, PADDING = 45.0, 125.0, 2.0  # mm; A4 minus 20 mm margins = 170 mm
HANGING_ROOM = 4.0  # mm: room for one hanging full-width punctuation mark
# Kinsoku: characters that may not start a line, and those that may not end one.
NO_LINE_START = frozenset(
    "、。，．・：；？！ー）」』】〕〉》’”…‥" + "ぁぃぅぇぉっゃゅょゎ" + "ァィゥェォッャュョヮヵヶ々"
)
NO_LINE_END = frozenset("（「『【〔〈《‘“")

APPROVAL_NOTICE_TITLE = "システムサービス利用契約変更承認通知"
APPLICATION_FORM_TITLE = "システムサービス利用契約変更申込書"
CHANGE_JA = "識別番号（削除）：利用者IDの廃止"
MAY_DIFFER_JA = "「利用開始希望日」は、確定した利用開始日と異なることがあります。"
# Statuses whose approval stands: only these have an approval notice.
APPROVED_STATUSES = (APPROVED, APPLIED)


class DocumentError(MailbotError):
    """A document cannot be produced; the message says why and what to do."""


class FontMissingError(DocumentError):
    """The Japanese font is not installed."""


class DocumentUnavailable(DocumentError, BilingualError):
    """The approval notice cannot be produced (yet): ``available_from`` says from when, if ever.

    ``message_ja`` is what the applicant reads on the status page; ``str()`` is the operator's
    one line (Japanese, then English).
    """

    def __init__(self, *, ja: str, en: str, available_from: date | None) -> None:
        super().__init__(ja=ja, en=en)
        self.available_from = available_from

    def __str__(self) -> str:
        return f"{self.message_ja} / {self.message_en}"


@dataclass(frozen=True)
class DocumentContext:
    """One application as the status page and the documents show it (a snapshot)."""

    receipt_no: str
    status: str
    status_ja: str
    received_on: date
    office_code: str
    company: str
    office_name: str
    department: str
    user_ids: tuple[str, ...]
    codes_abolished: tuple[str, ...]
    shared_codes_pending: dict[str, tuple[str, ...]]
    desired_start_date: date
    proposed_start_date: date
    start_date: date | None
    decided_on: date | None
    decision_reason: str | None
    applicant_name: str
    applicant_phone: str
    applicant_email: str
    manager_name: str
    manager_email: str
    reason: str
    remarks: str
    issuer: str  # the organisation that issues the approval notice (MAILBOT_ORGANISATION)
    zone: ZoneInfo  # where "today" is decided (MAILBOT_TIMEZONE)

    @property
    def office_line(self) -> str:
        return " ".join(part for part in (self.office_name, self.department) if part)

    @property
    def approved(self) -> bool:
        return self.status in APPROVED_STATUSES and self.start_date is not None

    def today(self, now: datetime) -> date:
        return now.astimezone(self.zone).date()


def document_context(session: Session, receipt_no: str, settings: Settings) -> DocumentContext:
    """Read one application for the documents (NotFoundError when there is none)."""
    application = find_application(session, receipt_no)
    data = application_context(session, application)
    office = data["office"] or {"company": "", "office": "", "department": ""}
    decided_at = application.decided_at
    return DocumentContext(
        receipt_no=application.receipt_no,
        status=application.status,
        status_ja=data["status_ja"],
        received_on=application.received_on,
        office_code=application.office_code,
        company=office["company"],
        office_name=office["office"],
        department=office["department"],
        user_ids=tuple(data["user_ids"]),
        codes_abolished=tuple(data["codes_abolished"]),
        shared_codes_pending=dict(data["shared_codes_pending"]),
        desired_start_date=application.desired_start_date,
        proposed_start_date=application.proposed_start_date,
        start_date=application.start_date,
        decided_on=decided_at.astimezone(settings.zone).date() if decided_at else None,
        decision_reason=application.decision_reason,
        applicant_name=application.applicant_name,
        applicant_phone=application.applicant_phone,
        applicant_email=application.applicant_email,
        manager_name=application.manager_name,
        manager_email=application.manager_email,
        reason=application.reason,
        remarks=application.remarks,
        issuer=settings.organisation,
        zone=settings.zone,
    )


# --- availability (rule 9) -----------------------------------------------------------------------


def approval_notice_refusal(context: DocumentContext, now: datetime) -> DocumentUnavailable | None:
    """Why the approval notice cannot be produced at ``now``, or None when it can."""
    start = context.start_date
    if context.status == UNDER_REVIEW:
        return DocumentUnavailable(
            ja="承認通知は、審査終了（承認）後、利用開始日以降に出力できます。",
            en=f"application {context.receipt_no} is under review: the approval notice exists "
            "once it is approved, from its start date on",
            available_from=None,
        )
    if not context.approved or start is None:
        return DocumentUnavailable(
            ja="この申込は承認されていないため、承認通知はありません。",
            en=f"application {context.receipt_no} is {context.status}: only an approved "
            "application has an approval notice",
            available_from=None,
        )
    if context.today(now) < start:
        return DocumentUnavailable(
            ja=f"承認通知は利用開始日（{ja_date(start)}）以降に出力できます。",
            en=f"the approval notice of {context.receipt_no} can be produced from its start "
            f"date, {start.isoformat()}, on",
            available_from=start,
        )
    return None


# --- the PDFs ------------------------------------------------------------------------------------


def approval_notice_pdf(context: DocumentContext, now: datetime) -> bytes:
    """システムサービス利用契約変更承認通知; DocumentUnavailable before the start date."""
    refusal = approval_notice_refusal(context, now)
    if refusal is not None:
        raise refusal
    assert context.start_date is not None  # approval_notice_refusal checked it
    today = context.today(now)
    pdf = _new_pdf(APPROVAL_NOTICE_TITLE, context, now)
    _right(pdf, f"発行日：{ja_date(today)}")
    _right(pdf, f"申込受付番号：{context.receipt_no}")
    pdf.ln(4)
    _lines(pdf, [context.company, context.office_line, f"管理責任者　{context.manager_name} 様"])
    pdf.ln(2)
    _right(pdf, context.issuer)
    _title(pdf, APPROVAL_NOTICE_TITLE)
    _paragraph(
        pdf,
        "貴社からお申込みのありましたシステムサービス利用契約の変更について、"
        "下記のとおり承認しましたので通知します。",
    )
    _centered(pdf, "記")
    rows = [
        ("申込受付番号", context.receipt_no),
        ("申込受付年月日", ja_date(context.received_on)),
        ("事業所", _office_text(context)),
        ("変更内容", CHANGE_JA),
        ("廃止する利用者ID", _ids_text(context.user_ids)),
        ("廃止する利用者コード", "\n".join(context.codes_abolished) or "なし"),
        *_pending_rows(context),
        ("利用開始日（適用日）", ja_date(context.start_date)),
        ("承認日", ja_date(context.decided_on) if context.decided_on else "-"),
    ]
    _table(pdf, rows)
    _notes(
        pdf,
        [
            # The guide's wording.
            "廃止となる利用者IDは管理統計資料取得を除き、利用開始日（適用日）以降、"
            "業務を行うことはできません。",
            "廃止となるパッケージソフトは、利用開始日（適用日）以降、ご利用になることはできません。",
            "本通知（PDF形式）は大切に保存（保管）してください。",
        ],
    )
    _right(pdf, "以上")
    return bytes(pdf.output())


def application_form_pdf(context: DocumentContext) -> bytes:
    """システムサービス利用契約変更申込書: what was applied for; any status, any time."""
    pdf = _new_pdf(APPLICATION_FORM_TITLE, context, None)
    _right(pdf, f"申込受付年月日：{ja_date(context.received_on)}")
    _right(pdf, f"申込受付番号：{context.receipt_no}")
    _title(pdf, APPLICATION_FORM_TITLE)
    _lines(pdf, [f"{context.issuer} 御中"])
    pdf.ln(2)
    _paragraph(pdf, "システムサービス利用契約について、下記のとおり変更を申し込みます。")
    _centered(pdf, "記")
    rows = [
        ("会社名", context.company),
        ("事業所", context.office_line),
        ("事業所コード", context.office_code),
        ("申込内容", CHANGE_JA),
        ("廃止する利用者ID", _ids_text(context.user_ids)),
        ("利用者コードの廃止", "\n".join(context.codes_abolished) or "なし"),
        *_pending_rows(context),
        ("利用開始希望日", ja_date(context.desired_start_date)),
        ("利用開始日", _start_text(context)),
        ("変更する理由", context.reason),
        (
            "申込担当者",
            f"{context.applicant_name}\n電話：{context.applicant_phone}\n"
            f"E-mail：{context.applicant_email}",
        ),
        ("管理責任者", f"{context.manager_name}\nE-mail：{context.manager_email}"),
        ("備考", context.remarks or "なし"),
        ("状況", context.status_ja),
    ]
    _table(pdf, rows)
    _notes(
        pdf,
        [
            MAY_DIFFER_JA,
            "「申込書」のご郵送は不要です。社内管理用に保管してください。",
        ],
    )
    return bytes(pdf.output())


def _office_text(context: DocumentContext) -> str:
    return f"{context.company} {context.office_line}\n（事業所コード：{context.office_code}）"


def _ids_text(user_ids: Sequence[str]) -> str:
    return "\n".join(
        f"{u}（利用者コード {user_code_of(u)}・識別番号 {ident_of(u)}・{network_ja(u)}）"
        for u in user_ids
    )


def _pending_rows(context: DocumentContext) -> list[tuple[str, str]]:
    """Rule 4: a shared code waits for the other offices; the documents say which."""
    lines = [
        f"{code}：次の事業所からのお申込み後に廃止となります（{'、'.join(offices)}）"
        if offices
        else f"{code}：共用する全ての事業所からのお申込みがそろいました"
        for code, offices in context.shared_codes_pending.items()
    ]
    return [("共用の利用者コード", "\n".join(lines))] if lines else []


def _start_text(context: DocumentContext) -> str:
    if context.start_date is not None:
        return f"{ja_date(context.start_date)}（確定）"
    return f"{ja_date(context.proposed_start_date)}（予定：審査終了時に確定します）"


DOCUMENT_KINDS = ("approval-notice", "application-form")


def produce_document(kind: str, context: DocumentContext, now: datetime) -> bytes:
    """The document named as on the command line and in the URLs (``DOCUMENT_KINDS``)."""
    if kind == "approval-notice":
        return approval_notice_pdf(context, now)
    if kind == "application-form":
        return application_form_pdf(context)
    raise DocumentError(f"unknown document {kind!r}; choose one of {', '.join(DOCUMENT_KINDS)}")


# --- drawing -------------------------------------------------------------------------------------


def font_path() -> Path:
    for candidate in FONT_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise FontMissingError(
        "the Japanese font IPAex Gothic (ipaexg.ttf) is not installed; install the Debian "
        f"package {FONT_PACKAGE} (`apt-get install {FONT_PACKAGE}`, or `make system-deps`)"
    )


def _new_pdf(title: str, context: DocumentContext, now: datetime | None) -> FPDF:
    path = font_path()
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_margins(20, 18, 20)
    pdf.set_auto_page_break(auto=True, margin=18)
    # IPAex Gothic has no bold face; registering the same file for "B" lets table headings
    # (bold by default in fpdf2) use it instead of failing on a missing style.
    pdf.add_font(FONT, "", str(path))
    pdf.add_font(FONT, "B", str(path))
    pdf.set_font(FONT, size=10.5)
    pdf.set_lang("ja")
    pdf.set_title(f"{title}（{context.receipt_no}）")
    pdf.set_author(context.issuer)
    pdf.set_creator("mailbot")
    if now is not None:
        pdf.set_creation_date(now)
    pdf.add_page()
    return pdf


def _right(pdf: FPDF, text: str) -> None:
    pdf.cell(0, 6, text, align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _centered(pdf: FPDF, text: str) -> None:
    pdf.cell(0, 8, text, align=Align.C, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _lines(pdf: FPDF, lines: Sequence[str]) -> None:
    for line in lines:
        if line:
            pdf.cell(0, 6, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _title(pdf: FPDF, text: str) -> None:
    pdf.ln(6)
    pdf.set_font_size(16)
    _centered(pdf, text)
    pdf.set_font_size(10.5)
    pdf.ln(4)


def _paragraph(pdf: FPDF, text: str) -> None:
    # Hanging punctuation may go into the right margin here (there is no cell border).
    for line in wrap_ja(pdf, text, pdf.epw):
        pdf.cell(0, 6, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


def _table(pdf: FPDF, rows: Sequence[tuple[str, str]]) -> None:
    with pdf.table(
        col_widths=(LABEL_WIDTH, VALUE_WIDTH),
        first_row_as_headings=False,
        text_align=(Align.L, Align.L),
        wrapmode=WrapMode.CHAR,
        line_height=6,
        padding=PADDING,
    ) as table:
        for label, value in rows:
            row = table.row()
            row.cell(label, style=FontFace(fill_color=(235, 240, 248)))
            # Wrapped here (with kinsoku) narrower than the cell, so fpdf2 never re-wraps.
            row.cell("\n".join(wrap_ja(pdf, value, VALUE_WIDTH - 2 * PADDING - HANGING_ROOM)))
    pdf.ln(4)


def wrap_ja(pdf: FPDF, text: str, width: float) -> list[str]:
    """Break ``text`` into lines at most ``width`` wide, at any character (Japanese has no
    spaces), following the basic kinsoku rules: closing punctuation and small kana never start
    a line (they hang past the width instead), opening brackets never end one."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line, line_width = "", 0.0
        for char in paragraph:
            char_width = pdf.get_string_width(char)
            if line and line_width + char_width > width and char not in NO_LINE_START:
                carry = ""
                while len(line) > 1 and line[-1] in NO_LINE_END:
                    line, carry = line[:-1], line[-1] + carry
                lines.append(line)
                line, line_width = carry, pdf.get_string_width(carry)
            line += char
            line_width += char_width
        lines.append(line)
    return lines


def _notes(pdf: FPDF, notes: Sequence[str]) -> None:
    pdf.set_font_size(9.5)
    for note in notes:
        _paragraph(pdf, f"※{note}")
    pdf.set_font_size(10.5)
