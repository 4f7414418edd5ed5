"""The mail-body form parser: labelled fields found, everything else left alone or reported."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mailbot.parsers.body import SIGNATURE_LIKE_LABELS, parse_body
from mailbot.parsers.csv_form import parse_csv
from mailbot.parsers.form import RawForm
from mailbot.parsers.labels import (
    CANONICAL_LABEL_JA,
    FIELD_ORDER,
    LABEL_ALIASES,
    LIST_FIELDS,
    MULTILINE_FIELDS,
    label_key,
    match_label,
)

SAMPLES = Path(__file__).resolve().parents[1] / "samples"  # docs/japanese-mail.md#the-sample-mails


def values(form: RawForm) -> dict[str, str]:
    return {name: raw.value for name, raw in form.fields.items()}


def codes(form: RawForm) -> list[tuple[str, str | None, str | None]]:
    return [(p.code, p.value, p.location) for p in form.problems]


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


MINIMAL = "事業所コード：TYO01\n廃止する利用者ID：1ANACA0A\n"


# --- the shared samples ---------------------------------------------------------------------


def _sample_text(name: str) -> str:
    message = email.message_from_bytes((SAMPLES / name).read_bytes(), policy=policy.compat32)
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    charset = message.get_content_charset()
    return payload.decode("iso2022_jp" if charset == "iso-2022-jp" else str(charset))


def test_sample_iso2022jp() -> None:
    form = parse_body(_sample_text("request-body-iso2022jp.eml"))
    assert values(form) == {
        "office_code": "OSK01",
        "user_ids": "２ＢＸＹＺ００１\n２ＢＸＹＺ００２",
        "abolish_user_codes": "２ＢＸＹＺ",
        "desired_start_date": "令和８年１２月２２日",
        "reason": "一般NACCS回線の廃止に伴い",
        "applicant_name": "加藤 一郎",
        "applicant_phone": "06-1234-5678",
        "manager_name": "伊藤 次郎",
        "manager_email": "ito@example.co.jp",
    }
    assert form.problems == []
    assert form.source == "本文"
    assert form.fields["office_code"].location == "本文 1行目"
    assert form.fields["user_ids"].location == "本文 2行目"
    assert form.fields["manager_email"].location == "本文 11行目"


def test_sample_utf8() -> None:
    text = _sample_text("request-body-utf8.eml")
    assert "\r\n" in text  # the sample keeps CRLF; line numbers must not care
    form = parse_body(text)
    assert values(form) == {
        "office_code": "TYO01",
        "user_ids": "1ANACA0A, 1ANACA0B",
        "desired_start_date": "2026年12月15日",
        "reason": "事業所の統合により netNACCS 端末を削減するため",
        "applicant_name": "山田 太郎",
        "applicant_phone": "03-1234-5678",
        "manager_name": "佐藤 花子",
        "manager_email": "sato@example.co.jp",
        "remarks": "特になし",
    }
    assert form.problems == []  # the title 【利用者ID廃止申込】 is not an unknown label
    assert form.fields["office_code"].location == "本文 2行目"
    assert form.fields["remarks"].location == "本文 10行目"


def test_sample_with_csv_attachment_has_no_form_in_its_body() -> None:
    message = email.message_from_bytes(
        (SAMPLES / "request-csv-cp932.eml").read_bytes(), policy=policy.compat32
    )
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    form = parse_body(payload.decode("iso2022_jp"))
    assert form.is_empty


# --- labels in every decoration ------------------------------------------------------------

LINE_LAYOUTS = [
    "{label}：{value}",
    "{label}: {value}",
    "{label} : {value}",
    "{label}:{value}",
    "【{label}】{value}",
    "【{label}】：{value}",
    "【{label}】 {value}",
    "［{label}］{value}",
    "[{label}] {value}",
    "■{label}：{value}",
    "□ {label}: {value}",
    "●{label}：{value}",
    "◆{label}：{value}",
    "・{label}：{value}",
    "* {label}: {value}",
    "1. {label}：{value}",
    "１．{label}：{value}",
    "①{label}：{value}",
    "(1) {label}: {value}",
    "{label}（必須）：{value}",
    "{label}(required): {value}",
    "{label}　※半角：{value}",
    "■【{label}】（必須）：{value}",
    "{label}\t{value}",
    "{label}　{value}",
    "{label}　　：　{value}　",
    "■{label} {value}",
    "{label}\n{value}",
    "{label}：\n{value}",
    "【{label}】\n{value}",
    "■{label}：\n{value}",
    "　　{label}：{value}",
]

SAMPLE_VALUES = {
    "office_code": "TYO01",
    "user_ids": "1ANACA0A",
    "abolish_user_codes": "1ANAC",
    "desired_start_date": "2026年12月15日",
    "reason": "事業所統合のため",
    "applicant_name": "㈱髙橋商事 髙橋 ①郎",
    "applicant_phone": "03-1234-5678",
    "applicant_email": "yamada@example.co.jp",
    "manager_name": "佐藤 花子",
    "manager_email": "sato@example.co.jp",
    "remarks": "特になし",
}


@pytest.mark.parametrize("layout", LINE_LAYOUTS)
@pytest.mark.parametrize("name", FIELD_ORDER)
def test_every_label_in_every_layout(layout: str, name: str) -> None:
    for label in LABEL_ALIASES[name][:2]:
        line = layout.format(label=label, value=SAMPLE_VALUES[name])
        other = "備考：なし" if name != "remarks" else "事業所コード：X1"
        form = parse_body(f"{other}\n{line}\n")
        assert form.fields[name].value == SAMPLE_VALUES[name], line
        assert form.fields[name].location == "本文 2行目"
        assert form.problems == [], line


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("利用者ID", "user_ids"),
        ("廃止利用者ID", "user_ids"),
        ("廃止する利用者ＩＤ", "user_ids"),
        ("利用開始日", "desired_start_date"),
        ("希望日", "desired_start_date"),
        ("理由", "reason"),
        ("申込理由", "reason"),
        ("担当者", "applicant_name"),
        ("担当者名", "applicant_name"),
        ("電話番号", "applicant_phone"),
        ("申込担当者電話", "applicant_phone"),
        ("担当者メール", "applicant_email"),
        ("管理責任者メール", "manager_email"),
        ("責任者", "manager_name"),
        ("office code", "office_code"),
        ("user ids", "user_ids"),
        ("user id", "user_ids"),
        ("start date", "desired_start_date"),
        ("applicant", "applicant_name"),
        ("phone", "applicant_phone"),
        ("manager", "manager_name"),
        ("notes", "remarks"),
    ],
)
def test_variants(label: str, name: str) -> None:
    other = "利用者ID：1ANACA0A" if name != "user_ids" else "管理責任者メールアドレス：m@x.jp"
    form = parse_body(f"{other}\n{label}：abc\n")
    assert form.fields[name].value == "abc"
    assert form.problems == []


def test_longest_label_wins_without_a_colon() -> None:
    form = parse_body(
        "利用者ID：1ANACA0A\n申込担当者　電話番号　03-1111-2222\n■申込担当者 山田 太郎\n"
    )
    assert values(form)["applicant_phone"] == "03-1111-2222"
    assert values(form)["applicant_name"] == "山田 太郎"


def test_full_width_everything() -> None:
    body = (
        "■事業所コード：ＴＹＯ０１\n"
        "■ＵＳＥＲ＿ＩＤＳ：１ＡＮＡＣＡ０Ａ，１ＡＮＡＣＡ０Ｂ\n"
        "【利用開始希望日】２０２６年１２月１５日\n"
        "ＭＡＮＡＧＥＲ＿ＥＭＡＩＬ：ｓａｔｏ＠ｅｘａｍｐｌｅ．ｃｏ．ｊｐ\n"
        "申込担当者：　山田　太郎　\n"
    )
    assert values(parse_body(body)) == {
        "office_code": "ＴＹＯ０１",
        "user_ids": "１ＡＮＡＣＡ０Ａ，１ＡＮＡＣＡ０Ｂ",
        "desired_start_date": "２０２６年１２月１５日",
        "manager_email": "ｓａｔｏ＠ｅｘａｍｐｌｅ．ｃｏ．ｊｐ",
        "applicant_name": "山田　太郎",  # inner U+3000 kept, outer trimmed
    }


def test_english_form() -> None:
    body = (
        "Office Code: TYO01\n"
        "user_ids: 1ANACA0A, 1ANACA0B\n"
        "Desired start date: 2026-12-15\n"
        "Reason: office merger\n"
        "Applicant: Taro Yamada\n"
        "Phone: 03-1234-5678\n"
        "Manager: Hanako Sato\n"
        "manager-email: sato@example.co.jp\n"
    )
    assert values(parse_body(body)) == {
        "office_code": "TYO01",
        "user_ids": "1ANACA0A, 1ANACA0B",
        "desired_start_date": "2026-12-15",
        "reason": "office merger",
        "applicant_name": "Taro Yamada",
        "applicant_phone": "03-1234-5678",
        "manager_name": "Hanako Sato",
        "manager_email": "sato@example.co.jp",
    }


def test_values_are_kept_as_typed() -> None:
    form = parse_body(
        "利用者ID：1ANACA0A\n申込担当者：㈱髙橋商事　髙橋 ①郎 様\n管理責任者：\u3000﨑山 Ⅱ世\u3000\n"
    )
    assert form.fields["applicant_name"].value == "㈱髙橋商事　髙橋 ①郎 様"
    assert form.fields["manager_name"].value == "﨑山 Ⅱ世"


def test_value_with_colons_and_times() -> None:
    form = parse_body("利用者ID：1ANACA0A\n【備考】10:00以降に連絡: 内線12\n\n理由：a:b：c\n")
    assert form.fields["remarks"].value == "10:00以降に連絡: 内線12"
    assert form.fields["reason"].value == "a:b：c"


# --- lists ---------------------------------------------------------------------------------


def test_list_comma_separated_inline_is_kept_as_typed() -> None:
    form = parse_body("廃止する利用者ID：1ANACA0A、1ANACA0B, 1ANACA0C　1ANACA0D\n備考：なし")
    assert form.fields["user_ids"].value == "1ANACA0A、1ANACA0B, 1ANACA0C　1ANACA0D"


def test_list_over_several_lines_after_a_label_alone() -> None:
    body = "【廃止する利用者ID】\n1ANACA0A\n  1ANACA0B  \n1ANACA0C, 1ANACA0D\n利用開始希望日：2026/12/15\n"
    form = parse_body(body)
    assert form.fields["user_ids"].value == "1ANACA0A\n1ANACA0B\n1ANACA0C, 1ANACA0D"
    assert form.fields["user_ids"].location == "本文 1行目"
    assert form.fields["desired_start_date"].value == "2026/12/15"


def test_list_continues_after_an_inline_value() -> None:
    form = parse_body("利用者ID：1ANACA0A\n1ANACA0B\n理由：統合\n")
    assert form.fields["user_ids"].value == "1ANACA0A\n1ANACA0B"


def test_list_items_lose_their_bullets_and_numbers() -> None:
    body = "廃止する利用者ID：\n・1ANACA0A\n- 1ANACA0B\n1. 1ANACA0C\n②1ANACA0D\n(5) 1ANACA0E\n"
    form = parse_body(body + "備考：なし\n")
    assert form.fields["user_ids"].value == "1ANACA0A\n1ANACA0B\n1ANACA0C\n1ANACA0D\n1ANACA0E"


def test_list_goes_on_over_blank_lines_while_lines_look_like_ids() -> None:
    # Outlook's HTML-to-text doubles line breaks; an ID after a blank line must not be lost.
    body = "廃止する利用者ID：\n\n1ANACA0A\n\n１ＡＮＡＣ－Ａ０Ｂ\n\n山田 太郎\nTEL: 03-9999-0000\n"
    form = parse_body("事業所コード：TYO01\n" + body)
    assert form.fields["user_ids"].value == "1ANACA0A\n１ＡＮＡＣ－Ａ０Ｂ"
    assert "applicant_phone" not in form.fields
    assert form.problems == []


def test_list_field_given_twice_is_one_list() -> None:
    form = parse_body("利用者ID：1ANACA0A\n事業所コード：TYO01\n利用者ID：1ANACA0B\n")
    assert form.fields["user_ids"].value == "1ANACA0A\n1ANACA0B"
    assert form.fields["user_ids"].location == "本文 1行目"
    assert form.problems == []


def test_multiline_reason() -> None:
    body = "利用者ID：1ANACA0A\n変更する理由：\n事業所の統合により\n背景：端末の削減\n\n申込担当者：山田\n"
    form = parse_body(body)
    # "背景：" inside free text is part of it, not an unknown label.
    assert form.fields["reason"].value == "事業所の統合により\n背景：端末の削減"
    assert form.problems == []


# --- quoted and replied-to text ------------------------------------------------------------


def test_quoted_lines_are_ignored_and_never_merged() -> None:
    body = (
        "利用者ID：1ANACA0B\n"
        "申込担当者：山田\n"
        "\n"
        "> 利用者ID：1ANACA0A\n"
        "＞ 申込担当者：佐藤\n"
        ">> 氏名：佐藤\n"
        "備考：なし\n"
    )
    form = parse_body(body)
    assert values(form) == {"user_ids": "1ANACA0B", "applicant_name": "山田", "remarks": "なし"}
    assert form.problems == []


@pytest.mark.parametrize(
    "header",
    [
        "-----Original Message-----",
        "----- Original Message -----",
        "-----元のメッセージ-----",
        "---------- Forwarded message ---------",
        "On Fri, Nov 28, 2025 at 10:00 AM Yamada Taro <yamada@example.co.jp> wrote:",
        "On Fri, Nov 28, 2025 at 10:00 AM 山田 太郎 <\nyamada@example.co.jp> wrote:",
        "2026年11月28日(土) 10:00 山田 太郎 <yamada@example.co.jp>:",
        "2026年11月28日(土) 10:00 山田 太郎 <\nyamada@example.co.jp>:",
        "2026/11/28 10:00、山田 太郎 wrote:",
        "山田 太郎 さんは書きました:",
        "From: 山田 太郎 <yamada@example.co.jp>\nSent: Friday, November 28, 2025 10:00 AM\n"
        "To: apply@mailbot.localhost\nSubject: 利用者ID廃止申込",
        "差出人: 山田 太郎 <yamada@example.co.jp>\n送信日時: 2025年11月28日 10:00\n"
        "宛先: apply@mailbot.localhost\n件名: 利用者ID廃止申込",
    ],
)
def test_reply_of_an_earlier_form_is_not_read(header: str) -> None:
    body = (
        "お世話になっております。修正版です。\n\n"
        "利用者ID：1ANACA0B\n申込担当者：山田\n\n"
        f"{header}\n"
        "利用者ID：1ANACA0A\n申込担当者：佐藤\n管理責任者：伊藤\n氏名：加藤\n"
    )
    form = parse_body(body)
    assert values(form) == {"user_ids": "1ANACA0B", "applicant_name": "山田"}
    assert form.problems == []


def test_top_posted_reply_without_a_new_form_is_empty() -> None:
    body = "承知しました。\n\n-----Original Message-----\n利用者ID：1ANACA0A\n"
    assert parse_body(body).is_empty


# --- signatures, separators, greetings -----------------------------------------------------

FORM = "事業所コード：TYO01\n廃止する利用者ID：1ANACA0A\n申込担当者電話番号：03-1234-5678\n"


@pytest.mark.parametrize(
    "signature",
    [
        "-- \n山田 太郎\nTEL: 03-9999-0000\nFAX: 03-9999-0001\n",
        "--\n山田 太郎\nTEL: 03-9999-0000\n",
        "━━━━━━━━━━━━━━━━\n株式会社ABC 物流部\n山田 太郎\nTEL：03-9999-0000\n"
        "E-mail：yamada@example.co.jp\nURL：https://example.co.jp\n━━━━━━━━━━━━━━━━\n",
        "\n--------------------------------\n株式会社ABC\nTEL 03-9999-0000\n",
        "\n＝＝＝＝＝＝＝＝＝＝\n株式会社ABC\n〒100-0001 東京都千代田区1-1\nTEL：03-9999-0000\n",
        "\n株式会社ABC 物流部\n山田 太郎\nTEL：03-9999-0000\n電話番号：03-9999-0002\n",
        "\n■株式会社ABC 物流部 山田太郎\nTEL：03-9999-0000\n",
        "\n************************\n* 株式会社ABC\n* TEL: 03-9999-0000\n************************\n",
    ],
)
def test_signatures_are_ignored(signature: str) -> None:
    form = parse_body(FORM + signature)
    assert values(form) == {
        "office_code": "TYO01",
        "user_ids": "1ANACA0A",
        "applicant_phone": "03-1234-5678",
    }
    assert form.problems == []


def test_separator_before_the_form_does_not_cut_it() -> None:
    body = (
        "お世話になっております。\n"
        "━━━━━━━━━━━━━━\n"
        "【利用者ID廃止申込】\n"
        "━━━━━━━━━━━━━━\n"
        "事業所コード：TYO01\n"
        "----------\n"
        "廃止する利用者ID：1ANACA0A\n"
        "━━━━━━━━━━━━━━\n"
        "申込担当者：山田\n"
        "━━━━━━━━━━━━━━\n"
        "よろしくお願いいたします。\n"
        "━━━━━━━━━━━━━━\n"
        "山田 太郎\nTEL: 03-9999-0000\n"
    )
    form = parse_body(body)
    assert values(form) == {
        "office_code": "TYO01",
        "user_ids": "1ANACA0A",
        "applicant_name": "山田",
    }
    assert form.problems == []


@pytest.mark.parametrize(
    "closing",
    [
        "\nよろしくお願いいたします。\n",
        "\n以上、よろしくお願いいたします。\n",
        "よろしくお願いいたします。\n",  # even without a blank line
        "以上\n",
        "何卒よろしくお願い申し上げます。\n",
        "\nBest regards,\nTaro\n",
        "\nお手数ですが、ご確認ください。\n\n山田\n",
    ],
)
def test_greetings_and_closings_are_ignored(closing: str) -> None:
    body = (
        "お世話になっております。\n株式会社ABCの山田です。\n以下の通り申し込みます。\n\n"
        "廃止する利用者ID：1ANACA0A\n変更する理由：統合のため\n備考：特になし\n" + closing
    )
    form = parse_body(body)
    assert values(form) == {"user_ids": "1ANACA0A", "reason": "統合のため", "remarks": "特になし"}
    assert form.problems == []


def test_body_with_only_a_signature_is_no_form() -> None:
    body = "お世話になっております。\n添付をご確認ください。\n\n山田\nTEL：03-1234-5678\n担当者：山田\n"
    assert parse_body(body).is_empty


def test_signature_like_labels_are_read_inside_the_form() -> None:
    form = parse_body("担当者：山田\nTEL：03-1234-5678\n利用者ID：1ANACA0A\n電話：03-0000\n")
    assert values(form)["applicant_name"] == "山田"
    assert [p.code for p in form.problems] == ["form.duplicate_field"]
    assert label_key("TEL") in SIGNATURE_LIKE_LABELS


def test_signature_like_labels_are_all_aliases() -> None:
    keys = {label_key(alias) for aliases in LABEL_ALIASES.values() for alias in aliases}
    assert keys >= SIGNATURE_LIKE_LABELS


# --- unknown labels and prose --------------------------------------------------------------


def test_unknown_labels_are_reported_with_line_numbers() -> None:
    body = (
        "お世話になっております。\n"  # 1
        "会社名：株式会社ABC\n"  # 2 colon label before the form: a mislabelled field
        "利用者ID：1ANACA0A\n"  # 3
        "氏名：山田 太郎\n"  # 4
        "■部署：物流部\n"  # 5
        "【連絡先】03-1234-5678\n"  # 6
        "Email: yamada@example.co.jp\n"  # 7
        "contact person: 山田\n"  # 8
        "【担当者情報】\n"  # 9 heading with a value below: meant as a label
        "山田 太郎\n"  # 10
        "備考：なし\n"  # 11
    )
    form = parse_body(body)
    assert codes(form) == [
        ("form.unknown_label", "会社名", "本文 2行目"),
        ("form.unknown_label", "氏名", "本文 4行目"),
        ("form.unknown_label", "部署", "本文 5行目"),
        ("form.unknown_label", "連絡先", "本文 6行目"),
        ("form.unknown_label", "Email", "本文 7行目"),
        ("form.unknown_label", "contact person", "本文 8行目"),
        ("form.unknown_label", "担当者情報", "本文 9行目"),
    ]
    assert all(p.field is None for p in form.problems)
    assert "廃止する利用者ID" in form.problems[0].message_ja
    assert "user_ids" in form.problems[0].message_en
    assert values(form) == {"user_ids": "1ANACA0A", "remarks": "なし"}


def test_headings_without_values_are_not_reported() -> None:
    body = (
        "【利用者ID廃止申込】\n■申込内容\n利用者ID：1ANACA0A\n\n【担当者情報】\n申込担当者：山田\n"
    )
    form = parse_body(body)
    assert form.problems == []
    assert values(form) == {"user_ids": "1ANACA0A", "applicant_name": "山田"}


@pytest.mark.parametrize(
    "prose",
    [
        "明日10:00に伺います",
        "詳細は https://example.co.jp/form を参照",
        "https://example.co.jp/form",
        "件名: 利用者ID廃止申込",
        "Subject: 利用者ID廃止申込",
        "Re: 利用者ID廃止申込",
        "宛先：NACCSセンター御中",
        "以下の通り申し込みます：",
        "理由としては以下のとおりです：",
        "NACCSセンター ご担当者様：",
        "ご担当者様：",
        "Please note the following points: thanks",
        "注意事項（重要）、必ずお読みください：",
        "時刻 12:30 / 13:45",
        "1ANACA0A：旧端末",
        "mailto:yamada@example.co.jp",
        "※注意：半角で記入",
        "「利用者ID」：8桁",
    ],
)
def test_prose_with_colons_is_not_reported(prose: str) -> None:
    before = parse_body(f"{prose}\n\n{MINIMAL}")
    assert before.problems == [], prose
    assert values(before) == {"office_code": "TYO01", "user_ids": "1ANACA0A"}
    after = parse_body(f"{MINIMAL}\n{prose}\n")
    assert after.problems == [], prose
    assert values(after) == {"office_code": "TYO01", "user_ids": "1ANACA0A"}


def test_bracketed_title_before_the_form_is_not_reported() -> None:
    form = parse_body("【ご依頼】利用者IDの廃止について\n\n" + MINIMAL)
    assert form.problems == []


def test_unknown_labels_after_the_signature_starts_are_not_reported() -> None:
    form = parse_body(MINIMAL + "\n山田 太郎\n住所：東京都\nFAX：03-9999-0001\n")
    assert form.problems == []


# --- duplicates and stray lines ------------------------------------------------------------


def test_duplicate_field_with_different_values() -> None:
    form = parse_body("利用者ID：1ANACA0A\n申込担当者：山田\n担当者：佐藤\n")
    assert codes(form) == [("form.duplicate_field", "佐藤", "本文 3行目")]
    problem = form.problems[0]
    assert problem.field == "applicant_name"
    assert "「申込担当者」" in problem.message_ja and "山田" in problem.message_ja
    assert "applicant_name" in problem.message_en
    assert form.fields["applicant_name"].value == "山田"  # the first one stays


def test_a_field_given_twice_reads_the_same_in_the_body_and_in_a_file() -> None:
    """One wording for one problem, whichever format the applicant used."""
    body = parse_body("利用者ID：1ANACA0A\n申込担当者：山田\n担当者：佐藤\n").problems[0]
    sheet = parse_csv("申込担当者,山田\n担当者,佐藤\n".encode(), "申込書.csv").problems[0]

    def without_places(text: str) -> str:
        for where in ("本文 2行目", "申込書.csv B1"):
            text = text.replace(where, "FIRST")
        for where in ("本文 3行目", "申込書.csv B2"):
            text = text.replace(where, "SECOND")
        return text

    assert body.code == sheet.code == "form.duplicate_field"
    assert without_places(body.message_ja) == without_places(sheet.message_ja)
    assert without_places(body.message_en) == without_places(sheet.message_en)
    assert "FIRST:「山田」" in without_places(body.message_ja)


def test_duplicate_field_with_the_same_value_is_fine() -> None:
    form = parse_body("利用者ID：1ANACA0A\n事業所コード：TYO01\n事業所コード：ＴＹＯ０１\n")
    assert form.problems == []
    assert form.fields["office_code"].value == "TYO01"


def test_empty_label_then_value_is_not_a_duplicate() -> None:
    form = parse_body("■申込担当者\n申込担当者：山田\n利用者ID：1ANACA0A\n")
    assert form.problems == []
    assert form.fields["applicant_name"].value == "山田"
    assert form.fields["applicant_name"].location == "本文 2行目"


def test_empty_field_is_kept_empty() -> None:
    form = parse_body("利用者ID：1ANACA0A\n備考：\n\n申込担当者：山田\n")
    assert form.fields["remarks"].value == ""
    assert form.problems == []


def test_second_line_for_a_single_value_field_is_a_problem() -> None:
    form = parse_body("利用者ID：1ANACA0A\n申込担当者：山田\n佐藤\n管理責任者：伊藤\n")
    assert codes(form) == [("form.extra_line", "佐藤", "本文 3行目")]
    assert form.problems[0].field == "applicant_name"
    assert form.fields["applicant_name"].value == "山田"


def test_unlabelled_line_inside_the_form_is_a_problem() -> None:
    body = "事業所コード：TYO01\n\n1ANACA0A\n\n廃止する利用者ID：1ANACA0B\n"
    form = parse_body(body)
    assert codes(form) == [("form.unlabelled_line", "1ANACA0A", "本文 3行目")]


def test_sentence_inside_the_form_is_prose() -> None:
    body = (
        "事業所コード：TYO01\n\n担当者は以下のとおりです。\n申込担当者：山田\n利用者ID：1ANACA0A\n"
    )
    form = parse_body(body)
    assert form.problems == []
    assert form.fields["applicant_name"].value == "山田"


# --- blank form, line numbers, source ------------------------------------------------------


def test_filled_in_blank_form_hints_are_no_values() -> None:
    body = (
        "■事業所コード：（登録連絡先が1事業所だけの場合は省略可）\n"
        "■廃止する利用者ID：（例: 1ANACA0A　複数の場合は1行に1つ）\n"
        "1ANACA0A\n"
        "1ANACA0B\n"
        "■利用者コードの廃止：（任意　例: 1ANAC）\n"
        "■申込担当者：山田\n"
    )
    form = parse_body(body)
    assert values(form) == {
        "office_code": "",
        "user_ids": "1ANACA0A\n1ANACA0B",
        "abolish_user_codes": "",
        "applicant_name": "山田",
    }
    assert form.problems == []


def test_line_numbers_with_crlf_bom_and_source() -> None:
    form = parse_body(
        "\ufeffお世話になります\r\n\r\n利用者ID：1ANACA0A\r\n氏名：x\r\n", source="転送本文"
    )
    assert form.source == "転送本文"
    assert form.fields["user_ids"].location == "転送本文 3行目"
    assert codes(form) == [("form.unknown_label", "氏名", "転送本文 4行目")]


def test_empty_body() -> None:
    assert parse_body("").is_empty
    assert parse_body("\n\n　\n").is_empty


# --- property: any form rendered as a body parses back -------------------------------------

_ALIAS_CHARS = {c for aliases in LABEL_ALIASES.values() for a in aliases for c in a + a.upper()}
# Value text that can never form a label, a separator, numbering or a closing phrase.
_FIRST = "".join(c for c in "山田加藤佐伊次郎花子太髙﨑㈱ＸＹＺ" if c not in _ALIAS_CHARS)
_REST = _FIRST + "①② 　0123456789０１２XYZ"

_ids = st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=8, max_size=8)
_text_line = st.builds(lambda a, b: (a + b).rstrip(), st.sampled_from(_FIRST), st.text(_REST))

LAYOUTS = [
    "{l}：{v}",
    "{l}: {v}",
    "【{l}】{v}",
    "【{l}】：{v}",
    "［{l}］ {v}",
    "■{l}：{v}",
    "◆ {l}: {v}",
    "1. {l}：{v}",
    "①{l}：{v}",
    "{l}（必須）：{v}",
    "{l}　※注意：{v}",
    "{l}\t{v}",
    "{l}　{v}",
    "{l}\n{v}",
    "【{l}】\n{v}",
    "■{l}：\n{v}",
]
PREAMBLES = [
    "",
    "お世話になっております。\n株式会社ABCの山田です。\n\n",
    "【利用者ID廃止申込】\n",
    "━━━━━━━━━━━━\n",
    "件名：利用者IDの廃止\n本日10:00に電話しました。\n\n",
]
TRAILERS = [
    "",
    "\nよろしくお願いいたします。\n",
    "以上\n",
    "\n--\n山田 太郎\nTEL: 03-9999-9999\n",
    "━━━━━━━━━━━━\n株式会社ABC\nTEL：03-0000-0000\n━━━━━━━━━━━━\n",
    "\n-----Original Message-----\n利用者ID：1ANACA0A\n申込担当者：佐藤\n",
]


@st.composite
def _field(draw: st.DrawFn, name: str) -> tuple[str, str, str]:
    """(name, rendered lines, expected raw value)."""
    label = draw(st.sampled_from(LABEL_ALIASES[name]))
    label = draw(st.sampled_from([label, label.upper(), full_width(label)]))
    if name in LIST_FIELDS:
        ids = draw(st.lists(_ids, min_size=1, max_size=4))
        ids = [draw(st.sampled_from([i, full_width(i)])) for i in ids]
        lines = [", ".join(ids)] if draw(st.booleans()) else ids
    elif name in MULTILINE_FIELDS:
        lines = draw(st.lists(_text_line, min_size=1, max_size=3))
    else:
        lines = [draw(_text_line)]
    layout = draw(st.sampled_from(LAYOUTS))
    rendered = layout.format(l=label, v=lines[0]) + "".join(f"\n{line}" for line in lines[1:])
    return name, rendered, "\n".join(line.strip() for line in lines)


@st.composite
def _body(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    others = draw(st.lists(st.sampled_from(FIELD_ORDER), unique=True))
    names = draw(st.permutations(sorted({"user_ids", *others}, key=FIELD_ORDER.index)))
    fields = [draw(_field(name)) for name in names]
    gaps = [draw(st.sampled_from(["\n", "\n\n"])) for _ in fields]
    text = "".join(rendered + gap for (_, rendered, _), gap in zip(fields, gaps, strict=True))
    body = draw(st.sampled_from(PREAMBLES)) + text + draw(st.sampled_from(TRAILERS))
    return body, {name: value for name, _, value in fields}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_body())
def test_property_rendered_form_parses_back(case: tuple[str, dict[str, str]]) -> None:
    body, expected = case
    assume(all(match_label(value) is None for value in expected.values()))
    form = parse_body(body)
    assert form.problems == [], body
    assert values(form) == expected, body


def test_canonical_labels_render_and_parse_back() -> None:
    body = "\n".join(f"■{CANONICAL_LABEL_JA[n]}：{SAMPLE_VALUES[n]}" for n in FIELD_ORDER)
    assert values(parse_body(body)) == SAMPLE_VALUES
