"""Typing a parsed form: every value normalised, every problem reported at once."""

from __future__ import annotations

import dataclasses
from datetime import date

from mailbot.draft import RequestDraft, build_draft
from mailbot.parsers.form import RawField, RawForm
from mailbot.parsers.labels import CANONICAL_LABEL_JA
from mailbot.problems import Problem

SENDER = "yamada@example.co.jp"

VALID = {
    "office_code": "ｔｙｏ０１",
    "user_ids": "１ＡＮＡＣＡ０Ａ、1anac-a0b\n1ANACA0A",
    "desired_start_date": "令和8年12月1日（火）",
    "reason": "\u3000事業所の統合のため\u3000",
    "applicant_name": "㈱○○ 髙橋 一郎 様",
    "applicant_phone": "０３－１２３４－５６７８",
    "manager_name": "佐藤 花子",
    "manager_email": "Sato@Example.CO.JP",
}


def form(values: dict[str, str], problems: list[Problem] | None = None) -> RawForm:
    fields = {
        name: RawField(name, value, f"本文 {line}行目")
        for line, (name, value) in enumerate(values.items(), start=1)
    }
    return RawForm(source="本文", fields=fields, problems=list(problems or []))


def problems_of(values: dict[str, str], sender: str = SENDER) -> list[Problem]:
    result = build_draft(form(values), sender)
    assert isinstance(result, list), result
    return result


def test_valid_form_is_typed_and_normalised() -> None:
    draft = build_draft(form(VALID), SENDER)
    assert draft == RequestDraft(
        office_code="TYO01",
        user_ids=("1ANACA0A", "1ANACA0B"),  # de-duplicated, order kept
        abolish_user_codes=(),
        desired_start_date=date(2026, 12, 1),
        reason="事業所の統合のため",
        applicant_name="㈱○○ 髙橋 一郎",  # not NFKC: ㈱ and 髙 as typed
        applicant_phone="03-1234-5678",
        applicant_email=SENDER,  # defaults to the sender
        manager_name="佐藤 花子",
        manager_email="Sato@example.co.jp",
        remarks="",
        source="本文",
    )


def test_optional_fields_when_given() -> None:
    values = {
        **VALID,
        "abolish_user_codes": "１ａｎａｃ",
        "applicant_email": "<takahashi@example.co.jp>",
        "remarks": "至急お願いします。",
    }
    draft = build_draft(form(values), SENDER)
    assert isinstance(draft, RequestDraft)
    assert draft.abolish_user_codes == ("1ANAC",)
    assert draft.applicant_email == "takahashi@example.co.jp"
    assert draft.remarks == "至急お願いします。"


def test_office_code_may_be_left_out() -> None:
    values = {k: v for k, v in VALID.items() if k != "office_code"}
    draft = build_draft(form(values), SENDER)
    assert isinstance(draft, RequestDraft) and draft.office_code is None


def test_every_missing_required_field_is_reported_at_once() -> None:
    problems = problems_of({})
    assert {p.field for p in problems} == {
        "user_ids",
        "desired_start_date",
        "reason",
        "applicant_name",
        "applicant_phone",
        "manager_name",
        "manager_email",
    }
    assert next(p for p in problems if p.field == "user_ids").code == "user_ids.missing"
    reason = next(p for p in problems if p.field == "reason")
    assert reason.code == "field.missing"
    assert "変更する理由" in reason.message_ja and "reason" in reason.message_en


def test_blank_id_field_means_no_ids_given() -> None:
    problems = problems_of({**VALID, "user_ids": " 、\n "})
    assert [p.code for p in problems] == ["user_ids.missing"]
    assert problems[0].location == "本文 2行目"


def test_invalid_values_are_all_named_with_their_location() -> None:
    values = {
        **VALID,
        "user_ids": "1ANACA0A, 1ANAC-A0, 1ANACA0B0",
        "abolish_user_codes": "1ANACA0A",
        "desired_start_date": "2026/02/30",
        "applicant_phone": "内線12",
        "manager_email": "sato＠example",
    }
    problems = problems_of(values)
    by_value = {p.value: p for p in problems}
    assert set(by_value) == {
        "1ANAC-A0",
        "1ANACA0B0",
        "1ANACA0A",
        "2026/02/30",
        "内線12",
        "sato＠example",
    }
    bad_id = by_value["1ANAC-A0"]
    assert bad_id.code == "user_id.invalid" and bad_id.field == "user_ids"
    assert bad_id.message_ja == (
        "利用者ID『1ANAC-A0』は8桁の英数字ではありません。8桁（例: 1ANACA0A）で記入してください。"
    )
    assert "1ANAC-A0" in bad_id.message_en
    assert bad_id.location == "本文 2行目"
    assert by_value["1ANACA0A"].code == "user_code.invalid"
    assert by_value["2026/02/30"].code == "date.invalid"
    assert "存在しない日付" in by_value["2026/02/30"].message_ja
    assert by_value["内線12"].code == "phone.invalid"
    assert by_value["sato＠example"].code == "email.invalid"
    assert by_value["sato＠example"].location == "本文 8行目"


def test_ambiguous_date_message_says_why() -> None:
    (problem,) = problems_of({**VALID, "desired_start_date": "26/12/1"})
    assert problem.code == "date.invalid"
    assert "2桁" in problem.message_ja and "2026/12/01" in problem.message_ja


def test_parser_problems_come_first_and_block_the_draft() -> None:
    unknown = Problem(
        "label.unknown", None, "担当部署", "不明な項目です", "Unknown label", "本文 9行目"
    )
    result = build_draft(form(VALID, [unknown]), SENDER)
    assert result == [unknown]


def test_sender_that_is_no_address_needs_an_applicant_email() -> None:
    (problem,) = problems_of(VALID, sender="MAILER-DAEMON")
    assert problem.field == "applicant_email" and problem.code == "email.invalid"
    fixed = build_draft(form({**VALID, "applicant_email": SENDER}), "MAILER-DAEMON")
    assert isinstance(fixed, RequestDraft) and fixed.applicant_email == SENDER


def test_field_labels_cover_exactly_the_form_fields() -> None:
    draft_fields = {f.name for f in dataclasses.fields(RequestDraft)} - {"source"}
    assert set(CANONICAL_LABEL_JA) == draft_fields
    assert CANONICAL_LABEL_JA["user_ids"] == "廃止する利用者ID"
