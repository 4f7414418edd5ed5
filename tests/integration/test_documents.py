"""The two PDFs, read back with poppler: ``pdftotext`` for the Japanese content, ``pdffonts``
for the embedded font, and page 1 rendered to PNG under tests/artifacts/ for a visual check
(no tofu boxes: look at the PNG).

The applications come from the real flow (request → approval by reply), on both databases.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from db.engine import session_scope
from mailbot import documents
from mailbot.documents import (
    DocumentContext,
    DocumentUnavailable,
    FontMissingError,
    application_form_pdf,
    approval_notice_pdf,
    document_context,
    produce_document,
)
from mailbot.errors import NotFoundError
from tests.integration.test_web import START, START_MOMENT, approve, submit
from tests.support.harness import Harness

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
RECEIPT = "260001A"


def tool(name: str) -> str:
    """A poppler tool; missing fails under CI=true (CI must not pass by skipping)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package poppler-utils; `make system-deps`)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def pdf_text(data: bytes, tmp_path: Path) -> str:
    pdf = tmp_path / "document.pdf"
    pdf.write_bytes(data)
    done = subprocess.run(
        [tool("pdftotext"), "-layout", "-enc", "UTF-8", str(pdf), "-"],
        capture_output=True,
        check=True,
    )
    return done.stdout.decode("utf-8")


def render_page_one(data: bytes, name: str, tmp_path: Path) -> Path:
    """Page 1 as PNG in tests/artifacts/ (git-ignored), for a person to look at."""
    pdf = tmp_path / f"{name}.pdf"
    pdf.write_bytes(data)
    ARTIFACTS.mkdir(exist_ok=True)
    stem = ARTIFACTS / f"{name}-page1"
    page_one = ["-f", "1", "-l", "1", "-singlefile"]
    subprocess.run(
        [tool("pdftoppm"), "-png", "-r", "110", *page_one, str(pdf), str(stem)], check=True
    )
    png = stem.with_suffix(".png")
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 20_000
    return png


def context_of(h: Harness, receipt_no: str = RECEIPT) -> DocumentContext:
    with session_scope(h.engine) as session:
        return document_context(session, receipt_no, h.settings)


@pytest.fixture
def approved(harness: Harness) -> DocumentContext:
    approve(harness, submit(harness, remarks="端末は12月末に撤去予定です。"))
    return context_of(harness)


def flat(text: str) -> str:
    """pdftotext -layout pads columns with spaces; compare without them."""
    return "".join(text.split())


def test_approval_notice_content(approved: DocumentContext, tmp_path: Path) -> None:
    text = pdf_text(approval_notice_pdf(approved, START_MOMENT), tmp_path)
    compact = flat(text)
    for expected in [
        "システムサービス利用契約変更承認通知",
        "発行日：2026年12月15日（火）",
        "申込受付番号：260001A",
        "○○株式会社",
        "東京事業所通関部",
        "管理責任者佐藤花子様",
        "輸出入・港湾関連情報処理センター株式会社（NACCSセンター）",
        "下記のとおり承認しましたので通知します。",
        "申込受付年月日2026年11月27日（金）",
        "（事業所コード：TYO01）",
        "識別番号（削除）：利用者IDの廃止",
        "1ANACA0A（利用者コード1ANAC・識別番号A0A・netNACCS）",
        "1ANACA0B（利用者コード1ANAC・識別番号A0B・netNACCS）",
        "利用開始日（適用日）2026年12月15日（火）",
        "承認日2026年11月27日（金）",
        "管理統計資料取得を除き",
        "以上",
    ]:
        assert expected in compact, f"{expected!r} not in:\n{text}"
    # 1ANAC001 stays: the code itself is not abolished (rule 3).
    assert "廃止する利用者コードなし" in compact


def test_approval_notice_page_one_renders(approved: DocumentContext, tmp_path: Path) -> None:
    data = approval_notice_pdf(approved, START_MOMENT)
    render_page_one(data, "approval-notice", tmp_path)
    pdf = tmp_path / "fonts.pdf"
    pdf.write_bytes(data)
    fonts = subprocess.run(
        [tool("pdffonts"), str(pdf)], capture_output=True, check=True, text=True
    ).stdout
    # The one font is IPAex Gothic, embedded as a subset: the PDF shows the same anywhere.
    (row,) = [line for line in fonts.splitlines() if "IPAexGothic" in line]
    assert "+IPAexGothic" in row and " yes yes " in row


def test_approval_notice_is_refused_before_the_start_date(approved: DocumentContext) -> None:
    with pytest.raises(DocumentUnavailable) as refused:
        approval_notice_pdf(approved, START_MOMENT - timedelta(seconds=1))
    assert refused.value.available_from == START
    assert (
        refused.value.message_ja
        == "承認通知は利用開始日（2026年12月15日（火））以降に出力できます。"
    )
    assert "2026-12-15" in str(refused.value)


def test_no_approval_notice_while_under_review(harness: Harness) -> None:
    submit(harness)
    with pytest.raises(DocumentUnavailable) as refused:
        approval_notice_pdf(context_of(harness), START_MOMENT + timedelta(days=30))
    assert refused.value.available_from is None
    assert "審査終了（承認）後" in refused.value.message_ja


def test_application_form_content(harness: Harness, tmp_path: Path) -> None:
    submit(harness, remarks="端末は12月末に撤去予定です。")
    data = application_form_pdf(context_of(harness))  # under review: any time
    compact = flat(pdf_text(data, tmp_path))
    for expected in [
        "システムサービス利用契約変更申込書",
        "申込受付年月日：2026年11月27日（金）",
        "申込受付番号：260001A",
        "輸出入・港湾関連情報処理センター株式会社（NACCSセンター）御中",
        "会社名○○株式会社",
        "事業所コードTYO01",
        "1ANACA0A（利用者コード1ANAC・識別番号A0A・netNACCS）",
        "利用開始希望日2026年12月15日（火）",
        "利用開始日2026年12月15日（火）（予定：審査終了時に確定します）",
        "変更する理由事業所の統合により端末を削減するため",
        "山田太郎",
        "電話：03-1234-5678",
        "E-mail：yamada@example.co.jp",
        "佐藤花子",
        "E-mail：sato@example.co.jp",
        "備考端末は12月末に撤去予定です。",
        "状況内容確認中",
        "「利用開始希望日」は、確定した利用開始日と異なることがあります。",
        "「申込書」のご郵送は不要です。",
    ]:
        assert expected in compact, f"{expected!r} not in:\n{compact}"
    render_page_one(data, "application-form", tmp_path)


def test_application_form_after_approval_names_the_confirmed_date(
    approved: DocumentContext, tmp_path: Path
) -> None:
    compact = flat(pdf_text(produce_document("application-form", approved, START_MOMENT), tmp_path))
    assert "利用開始日2026年12月15日（火）（確定）" in compact
    assert "状況審査終了（承認）" in compact


def test_unknown_receipt(harness: Harness) -> None:
    with pytest.raises(NotFoundError):
        context_of(harness, "269999A")


# --- without a database ------------------------------------------------------------------------


def sample(**changes: object) -> DocumentContext:
    values: dict[str, object] = {
        "receipt_no": "260042A",
        "status": "approved",
        "status_ja": "審査終了（承認）",
        "received_on": date(2026, 11, 27),
        "office_code": "TYO01",
        "company": "○○株式会社",
        "office_name": "東京事業所",
        "department": "通関部",
        "user_ids": ("1ANACA0A",),
        "codes_abolished": (),
        "shared_codes_pending": {},
        "desired_start_date": date(2026, 12, 10),
        "proposed_start_date": date(2026, 12, 15),
        "start_date": date(2026, 12, 15),
        "decided_on": date(2026, 11, 30),
        "decision_reason": None,
        "applicant_name": "山田 太郎",
        "applicant_phone": "03-1234-5678",
        "applicant_email": "yamada@example.co.jp",
        "manager_name": "佐藤 花子",
        "manager_email": "sato@example.co.jp",
        "reason": "事業所の統合により端末を削減するため",
        "remarks": "",
        "issuer": "輸出入・港湾関連情報処理センター株式会社（NACCSセンター）",
        "zone": ZoneInfo("Asia/Tokyo"),
    }
    values.update(changes)
    return DocumentContext(**values)  # type: ignore[arg-type]


def test_a_missing_font_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(documents, "FONT_CANDIDATES", (tmp_path / "ipaexg.ttf",))
    with pytest.raises(FontMissingError, match="fonts-ipaexfont-gothic"):
        application_form_pdf(sample())


def test_long_japanese_text_wraps_inside_the_cell_with_kinsoku(tmp_path: Path) -> None:
    reason = "事業所の統合により端末を削減するため、" * 12 + "（以上）。"
    data = application_form_pdf(sample(reason=reason))
    text = pdf_text(data, tmp_path)
    lines = [line.strip() for line in text.splitlines() if "端末" in line or "以上" in line]
    assert len(lines) > 3  # wrapped, not cut off or run past the page edge
    assert all(not line.startswith(("、", "。", "）")) for line in lines)
    # -layout puts the row's label beside the middle line of the value: take it out.
    assert flat(reason) in flat(text).replace("変更する理由", "")


def test_a_shared_code_names_the_offices_still_to_apply(tmp_path: Path) -> None:
    context = sample(
        user_ids=("1ANACA0A", "1ANACA0B", "1ANAC001"), shared_codes_pending={"1ANAC": ("OSK01",)}
    )
    compact = flat(pdf_text(approval_notice_pdf(context, START_MOMENT), tmp_path))
    assert "共用の利用者コード1ANAC：次の事業所からのお申込み後に廃止となります（OSK01）" in compact


def test_the_start_date_is_decided_in_tokyo(tmp_path: Path) -> None:
    context = sample()
    # 2026-12-14 15:00 UTC is already 12/15 in Tokyo.
    assert approval_notice_pdf(context, datetime.fromisoformat("2026-12-14T15:00:00+00:00"))
    with pytest.raises(DocumentUnavailable):
        approval_notice_pdf(context, datetime.fromisoformat("2026-12-14T14:59:59+00:00"))
