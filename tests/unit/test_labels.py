"""The label table: every spelling and decoration people use maps to one canonical field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbot.parsers.labels import (
    CANONICAL_LABEL_JA,
    FIELD_ORDER,
    LABEL_ALIASES,
    LIST_FIELDS,
    MULTILINE_FIELDS,
    accepted_labels_ja,
    label_key,
    match_label,
    strip_label_decorations,
    unknown_label_problem,
)

# docs/domain.md#fields-and-labels, verbatim.
DOMAIN_LABELS = {
    "office_code": ("事業所コード", "office_code"),
    "user_ids": ("廃止する利用者ID", "user_ids"),
    "abolish_user_codes": ("利用者コードの廃止", "abolish_user_codes"),
    "desired_start_date": ("利用開始希望日", "desired_start_date"),
    "reason": ("変更する理由", "reason"),
    "applicant_name": ("申込担当者", "applicant_name"),
    "applicant_phone": ("申込担当者電話番号", "applicant_phone"),
    "applicant_email": ("申込担当者メールアドレス", "applicant_email"),
    "manager_name": ("管理責任者", "manager_name"),
    "manager_email": ("管理責任者メールアドレス", "manager_email"),
    "remarks": ("備考", "remarks"),
}

# The variants people really type (and the English ones the brief names).
VARIANTS = [
    ("利用者ID", "user_ids"),
    ("廃止利用者ID", "user_ids"),
    ("廃止する利用者ＩＤ", "user_ids"),
    ("ユーザーID", "user_ids"),
    ("user ids", "user_ids"),
    ("user id", "user_ids"),
    ("User-IDs", "user_ids"),
    ("廃止する利用者コード", "abolish_user_codes"),
    ("利用開始日", "desired_start_date"),
    ("希望日", "desired_start_date"),
    ("廃止希望日", "desired_start_date"),
    ("start date", "desired_start_date"),
    ("理由", "reason"),
    ("申込理由", "reason"),
    ("変更理由", "reason"),
    ("担当者", "applicant_name"),
    ("担当者名", "applicant_name"),
    ("applicant", "applicant_name"),
    ("電話番号", "applicant_phone"),
    ("申込担当者電話", "applicant_phone"),
    ("TEL", "applicant_phone"),
    ("phone", "applicant_phone"),
    ("担当者メール", "applicant_email"),
    ("申込担当者E-mail", "applicant_email"),
    ("管理責任者メール", "manager_email"),
    ("責任者", "manager_name"),
    ("manager", "manager_name"),
    ("notes", "remarks"),
    ("その他", "remarks"),
    ("office code", "office_code"),
]

DECORATIONS = [
    "{}",
    "【{}】",
    "［{}］",
    "[{}]",
    "〔{}〕",
    "■{}",
    "□{}",
    "●{}",
    "◆{}",
    "・{}",
    "*{}",
    "＊{}",
    "**{}**",
    "# {}",
    "1. {}",
    "１．{}",
    "2) {}",
    "①{}",
    "⑴ {}",
    "⑫ {}",
    "(1) {}",
    "（３）{}",
    "{}：",
    "{}:",
    "{} :",
    "{}　：",
    "{}（必須）",
    "{}(required)",
    "{}（任意）",
    "{} (optional)",
    "{}（8桁）",
    "{}（例: 1ANACA0A）",
    "{}※",
    "{}　※半角で記入",
    "{}※8桁で記入してください",
    "{}【YYYY/MM/DD】",
    "【必須】{}",
    "{} [optional]",
    "{}　",
    "　{}　",
    "■【{}】（必須）：",
    "①【{}】：",
    "・{}（任意）　※省略可：",
]


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


ALL_ALIASES = [(alias, name) for name, aliases in LABEL_ALIASES.items() for alias in aliases]


def test_field_order_and_tables_agree() -> None:
    assert tuple(DOMAIN_LABELS) == FIELD_ORDER
    assert set(CANONICAL_LABEL_JA) == set(FIELD_ORDER) == set(LABEL_ALIASES)
    assert {"user_ids", "abolish_user_codes"} == LIST_FIELDS
    assert {"reason", "remarks"} == MULTILINE_FIELDS


@pytest.mark.parametrize(("name", "labels"), DOMAIN_LABELS.items())
def test_domain_labels_are_canonical(name: str, labels: tuple[str, str]) -> None:
    japanese, english = labels
    assert CANONICAL_LABEL_JA[name] == japanese
    assert LABEL_ALIASES[name][:2] == (japanese, english)
    assert match_label(japanese) == name
    assert match_label(english) == name


@pytest.mark.parametrize(("alias", "name"), ALL_ALIASES)
def test_every_alias_matches_its_field_only(alias: str, name: str) -> None:
    assert match_label(alias) == name


@pytest.mark.parametrize(("alias", "name"), VARIANTS)
def test_variants_people_type(alias: str, name: str) -> None:
    assert match_label(alias) == name


@pytest.mark.parametrize("decoration", DECORATIONS)
@pytest.mark.parametrize(("name", "labels"), DOMAIN_LABELS.items())
def test_every_domain_label_in_every_decoration(
    decoration: str, name: str, labels: tuple[str, str]
) -> None:
    for label in labels:
        assert match_label(decoration.format(label)) == name, decoration.format(label)


@pytest.mark.parametrize("decoration", DECORATIONS)
def test_every_variant_in_every_decoration(decoration: str) -> None:
    for alias, name in VARIANTS:
        assert match_label(decoration.format(alias)) == name, decoration.format(alias)


@pytest.mark.parametrize(("alias", "name"), ALL_ALIASES)
def test_any_width_and_case(alias: str, name: str) -> None:
    assert match_label(full_width(alias)) == name
    assert match_label(alias.upper()) == name
    assert match_label(full_width(alias.title())) == name


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("User_IDs", "user_ids"),
        ("user-ids", "user_ids"),
        ("USER IDS", "user_ids"),
        ("Desired Start Date", "desired_start_date"),
        ("desired-start-date", "desired_start_date"),
        ("ｕｓｅｒ＿ｉｄｓ", "user_ids"),
        ("Manager E-Mail", "manager_email"),
        ("manager email", "manager_email"),
        ("Tel.", "applicant_phone"),
        ("申込担当者・電話番号", "applicant_phone"),
        ("申込担当者　電話番号", "applicant_phone"),
        ("事　業　所　コ　ー　ド", "office_code"),
        ("ﾒｰﾙ", None),  # half-width kana: NFKC makes it メール, which alone is no label
        ("管理責任者ﾒｰﾙｱﾄﾞﾚｽ", "manager_email"),
    ],
)
def test_spaces_underscores_hyphens_and_width_do_not_matter(text: str, name: str | None) -> None:
    assert match_label(text) == name


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("申込担当者電話番号", "applicant_phone"),
        ("申込担当者メールアドレス", "applicant_email"),
        ("申込担当者", "applicant_name"),
        ("管理責任者メールアドレス", "manager_email"),
        ("管理責任者", "manager_name"),
        ("担当者電話番号", "applicant_phone"),
        ("担当者", "applicant_name"),
        ("利用者コードの廃止", "abolish_user_codes"),
        ("廃止する利用者ID", "user_ids"),
    ],
)
def test_longer_labels_are_not_taken_for_shorter_ones(text: str, name: str) -> None:
    assert match_label(text) == name
    assert match_label(f"【{text}】") == name


@pytest.mark.parametrize(
    "text",
    [
        "",
        "　",
        "■",
        "【】",
        "（必須）",
        "※備考",  # a note, not a label
        "メールアドレス",  # applicant's or manager's? ambiguous, so unknown
        "email",
        "E-mail",
        "氏名",
        "利用者コード",
        "事業所",
        "項目",
        "内容",
        "件名",
        "【利用者ID廃止申込】",
        "利用者ID廃止申込",
        "1ANACA0A",
        "申込担当者電話番号メモ",
        "申込担当者㈱",  # NFKC makes ㈱ "(株)": still no note
        "「利用者ID」",  # quoted in prose
    ],
)
def test_not_labels(text: str) -> None:
    assert match_label(text) is None


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("廃止する利用者ID　※8桁", "user_ids"),
        ("利用開始希望日（YYYY/MM/DD）", "desired_start_date"),
        ("申込担当者メールアドレス（任意）", "applicant_email"),
        ("管理責任者：", "manager_name"),
        ("　事業所コード　", "office_code"),
        ("備考※任意", "remarks"),
        ("user_ids (8 characters)", "user_ids"),
    ],
)
def test_spreadsheet_header_cells(header: str, name: str) -> None:
    assert match_label(header) == name


def test_strip_label_decorations() -> None:
    assert strip_label_decorations("■【利用者ＩＤ】（必須）：") == "利用者ID"
    assert strip_label_decorations("①管理責任者　※部長以上") == "管理責任者"
    assert strip_label_decorations("【利用者ID廃止申込】") == "利用者ID廃止申込"
    assert strip_label_decorations("※注意") == ""


def test_label_key() -> None:
    assert label_key("User_IDs") == label_key("ｕｓｅｒ　ｉｄｓ") == "userids"
    assert label_key("申込担当者 電話番号") == "申込担当者電話番号"


def test_unknown_label_problem_names_the_label_and_lists_accepted_ones() -> None:
    problem = unknown_label_problem("氏名", "本文 3行目")
    assert problem.code == "form.unknown_label"
    assert problem.field is None
    assert problem.value == "氏名"
    assert problem.location == "本文 3行目"
    assert "「氏名」" in problem.message_ja
    assert accepted_labels_ja() in problem.message_ja
    assert all(label in problem.message_ja for label in CANONICAL_LABEL_JA.values())
    assert '"氏名"' in problem.message_en
    assert all(name in problem.message_en for name in FIELD_ORDER)


@given(
    alias_and_name=st.sampled_from(ALL_ALIASES),
    decoration=st.sampled_from(DECORATIONS),
    wide=st.booleans(),
    upper=st.booleans(),
)
def test_property_any_alias_in_any_decoration(
    alias_and_name: tuple[str, str], decoration: str, wide: bool, upper: bool
) -> None:
    alias, name = alias_and_name
    label = alias.upper() if upper else alias
    label = full_width(label) if wide else label
    assert match_label(decoration.format(label)) == name
