"""JSON request forms: the object of docs/domain.md#json, syntax errors by line and column."""

from __future__ import annotations

import json

import pytest

from mailbot.parsers.form import RawForm
from mailbot.parsers.json_form import MAX_JSON_BYTES, parse_json

NAME = "申込書.json"


def values(form: RawForm) -> dict[str, str]:
    return {name: raw.value for name, raw in form.fields.items()}


def codes(form: RawForm) -> list[tuple[str, str | None]]:
    return [(problem.code, problem.location) for problem in form.problems]


REQUEST = {
    "office_code": "TYO01",
    "user_ids": ["1ANACA0A", "１ＡＮＡＣＡ０Ｂ"],
    "abolish_user_codes": [],
    "desired_start_date": "2026-12-15",
    "reason": "移管のため\n年内に完了",
    "applicant_name": "㈱髙橋商事 髙橋 ①郎",
    "applicant_phone": "03-1234-5678",
    "applicant_email": None,
    "manager_name": "佐藤 花子",
    "manager_email": "sato@example.co.jp",
    "remarks": "",
}


def test_the_domain_object() -> None:
    data = json.dumps(REQUEST, ensure_ascii=False, indent=2).encode()
    form = parse_json(data, NAME)
    assert form.problems == []
    assert values(form) == {
        "office_code": "TYO01",
        "user_ids": "1ANACA0A\n１ＡＮＡＣＡ０Ｂ",  # raw, one per line
        "abolish_user_codes": "",
        "desired_start_date": "2026-12-15",
        "reason": "移管のため\n年内に完了",
        "applicant_name": "㈱髙橋商事 髙橋 ①郎",
        "applicant_phone": "03-1234-5678",
        "applicant_email": "",
        "manager_name": "佐藤 花子",
        "manager_email": "sato@example.co.jp",
        "remarks": "",
    }
    assert form.fields["user_ids"].location == f'{NAME} "user_ids"'


def test_user_ids_as_a_string_and_a_bom() -> None:
    data = b"\xef\xbb\xbf" + b'{"user_ids": "1ANACA0A, 1ANACA0B"}'
    assert values(parse_json(data, NAME)) == {"user_ids": "1ANACA0A, 1ANACA0B"}


def test_japanese_keys_and_numbers() -> None:
    data = '{"事業所コード": 12345, "廃止する利用者ID": [12345678]}'.encode()
    assert values(parse_json(data, NAME)) == {"office_code": "12345", "user_ids": "12345678"}


def test_unknown_key_is_reported() -> None:
    form = parse_json(b'{"user_ids": ["1ANACA0A"], "company": "ABC"}', NAME)
    assert values(form) == {"user_ids": "1ANACA0A"}
    assert codes(form) == [("form.unknown_label", f'{NAME} "company"')]


def test_syntax_error_names_line_and_column() -> None:
    data = '{\n  "user_ids": ["1ANACA0A"],\n  "reason": "移管"\n  "remarks": ""\n}'.encode()
    form = parse_json(data, NAME)
    assert codes(form) == [("file.json_syntax", f"{NAME} 4行3列")]
    assert "4行目3文字目" in form.problems[0].message_ja
    assert "line 4, column 3" in form.problems[0].message_en


@pytest.mark.parametrize("text", ['["1ANACA0A"]', '"1ANACA0A"', "42", "null"])
def test_top_level_must_be_an_object(text: str) -> None:
    assert codes(parse_json(text.encode(), NAME)) == [("file.json_not_object", NAME)]


def test_empty_object_is_no_form() -> None:
    assert [p.code for p in parse_json(b"{}", NAME).problems] == ["file.json_not_object"]


@pytest.mark.parametrize(
    ("member", "location"),
    [
        ('"reason": {"text": "x"}', f'{NAME} "reason"'),
        ('"reason": true', f'{NAME} "reason"'),
        ('"applicant_name": ["山田", "鈴木"]', f'{NAME} "applicant_name"'),
        ('"user_ids": ["1ANACA0A", ["1ANACA0B"]]', f'{NAME} "user_ids"[1]'),
    ],
)
def test_values_of_the_wrong_type(member: str, location: str) -> None:
    form = parse_json(("{" + member + "}").encode(), NAME)
    assert codes(form) == [("form.json_type", location)]


def test_free_text_as_a_list_of_lines() -> None:
    form = parse_json('{"reason": ["移管のため", "年内"]}'.encode(), NAME)
    assert values(form) == {"reason": "移管のため\n年内"}


def test_a_field_given_twice() -> None:
    data = '{"user_ids": ["1ANACA0A"], "利用者ID": "1ANACA0B", "reason": "a", "理由": "b"}'
    form = parse_json(data.encode(), NAME)
    assert values(form)["user_ids"] == "1ANACA0A\n1ANACA0B"
    assert codes(form) == [("form.duplicate_field", f'{NAME} "理由"')]


def test_not_utf8() -> None:
    data = '{"reason": "移管"}'.encode("cp932")
    assert codes(parse_json(data, NAME)) == [("file.not_text", NAME)]


def test_too_large() -> None:
    data = b'{"remarks": "' + b"x" * MAX_JSON_BYTES + b'"}'
    assert codes(parse_json(data, NAME)) == [("file.too_large", NAME)]


def test_deep_nesting_is_a_problem_not_a_crash() -> None:
    data = b"[" * 100_000 + b"]" * 100_000
    assert [p.code for p in parse_json(data, NAME).problems] == ["file.json_not_object"]
