"""Every problem in one reply (issue 14): field checks and registry checks run together.

A request body is written with faults in it, read by the real body parser, typed by
``read_draft``, checked by ``check_request`` against a registry like the demo one, and the
problem reply is rendered with the real template. Whatever combination of independent faults
it has, the reply names each one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.draft import read_draft
from mailbot.notify import problems_body
from mailbot.parsers.body import parse_body
from mailbot.problems import Problem
from mailbot.rules import Plan, check_request
from mailbot.upcoming import upcoming
from tests.unit.test_rules import CAL, KATO, SCHEDULE, TODAY, YAMADA, view

# TODAY is Thursday 2026-11-19: the earliest start date is 11/26 (11/23 is a holiday).
GOOD_DATE = "2026年12月1日"


@dataclass
class Body:
    """The fields of a request body; faults change them."""

    office_code: str = "TYO01"
    user_ids: tuple[str, ...] = ("4GHIJA01",)
    abolish_codes: str | None = None
    start: str = GOOD_DATE
    reason: str = "事業所の統合のため"
    applicant: str = "山田 太郎"
    phone: str = "03-1234-5678"
    applicant_email: str | None = None
    manager: str = "佐藤 花子"
    manager_email: str = "sato@example.co.jp"
    extra: str = ""

    def text(self) -> str:
        lines = [
            f"■事業所コード：{self.office_code}",
            "■廃止する利用者ID：" + "、".join(self.user_ids),
            f"■利用開始希望日：{self.start}",
            f"■変更する理由：{self.reason}",
            f"■申込担当者：{self.applicant}",
            f"■申込担当者電話番号：{self.phone}",
            f"■管理責任者：{self.manager}",
            f"■管理責任者メールアドレス：{self.manager_email}",
        ]
        if self.abolish_codes is not None:
            lines.append(f"■利用者コードの廃止：{self.abolish_codes}")
        if self.applicant_email is not None:
            lines.append(f"■申込担当者メールアドレス：{self.applicant_email}")
        return "\n".join(lines) + "\n" + self.extra


@dataclass(frozen=True)
class Fault:
    name: str
    slot: str  # faults in the same slot change the same value: never combined
    apply: Callable[[Body], None]
    named_by: str  # what the Japanese part of the reply must say


def _set(**values: object) -> Callable[[Body], None]:
    def apply(body: Body) -> None:
        for key, value in values.items():
            setattr(body, key, value)

    return apply


def _add_id(user_id: str) -> Callable[[Body], None]:
    def apply(body: Body) -> None:
        body.user_ids = (*body.user_ids, user_id)

    return apply


def _add_line(line: str) -> Callable[[Body], None]:
    def apply(body: Body) -> None:
        body.extra += line + "\n"

    return apply


FAULTS = [
    Fault("no reason", "reason", _set(reason=""), "「変更する理由」が記入されていません"),
    Fault("no applicant", "applicant", _set(applicant=""), "「申込担当者」が記入されていません"),
    Fault("no manager", "manager", _set(manager=""), "「管理責任者」が記入されていません"),
    Fault("bad phone", "phone", _set(phone="電話なし"), "申込担当者電話番号『電話なし』"),
    Fault(
        "bad manager address",
        "manager_email",
        _set(manager_email="sato-at-example"),
        "『sato-at-example』はメールアドレス",
    ),
    Fault(
        "manager not a contact",
        "manager_email",
        _set(manager_email=KATO),
        f"管理責任者メールアドレス『{KATO}』は、事業所 TYO01 の登録連絡先ではありません",
    ),
    Fault(
        "applicant address not a contact",
        "applicant_email",
        _set(applicant_email="someone@example.net"),
        "申込担当者メールアドレス『someone@example.net』は、事業所 TYO01 の登録連絡先",
    ),
    Fault(
        "impossible date",
        "start",
        _set(start="2027年2月30日"),
        "利用開始希望日『2027年2月30日』は存在しない日付です",
    ),
    Fault("past date", "start", _set(start="2026年11月2日"), "2026年11月2日（月）』は過去の日付"),
    Fault(
        "too soon",
        "start",
        _set(start="2026年11月25日"),
        "2026年11月25日（水）』は審査に必要な期間",
    ),
    Fault(
        "unknown ID",
        "unknown_id",
        _add_id("3KAIZ999"),
        "利用者ID『3KAIZ999』は貴事業所に登録されていません",
    ),
    Fault(
        "another office's ID",
        "foreign_id",
        _add_id("1ANACA0C"),
        "利用者ID『1ANACA0C』は貴事業所に登録されていません",
    ),
    Fault(
        "malformed ID", "malformed_id", _add_id("XYZ"), "利用者ID『XYZ』は8桁の英数字ではありません"
    ),
    Fault(
        "abolished ID",
        "abolished_id",
        _add_id("1ANACA0D"),
        "利用者ID『1ANACA0D』は既に廃止されています",
    ),
    Fault(
        "ID in an open application",
        "open_id",
        _add_id("3CDEF002"),
        "利用者ID『3CDEF002』は申込受付番号 260011A で既に申込中です",
    ),
    Fault(
        "code without all its IDs",
        "abolish_codes",
        _set(abolish_codes="4GHIJ"),
        "次の利用者IDが申込にありません: 4GHIJ001",
    ),
    Fault(
        "unknown label", "extra", _add_line("■色：赤"), "「色」は申込書の項目名として認識できません"
    ),
]


def check(body: Body, sender: str = YAMADA) -> Plan | list[Problem]:
    draft = read_draft(parse_body(body.text()), sender)
    return check_request(draft, sender, view(), SCHEDULE, CAL, TODAY, 4)


def reply_for(body: Body) -> str:
    result = check(body)
    assert isinstance(result, list), f"accepted: {body.text()}"
    text = problems_body(
        "NACCSセンター",
        result,
        name=None,
        office=None,
        schedule=upcoming(SCHEDULE, CAL, TODAY, 4),
    )
    return text.split("[English]")[0]


def test_the_faults_are_at_least_ten_kinds() -> None:
    assert len({fault.slot for fault in FAULTS}) >= 10


def test_without_faults_the_request_is_accepted() -> None:
    assert isinstance(check(Body()), Plan)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(FAULTS), min_size=1, max_size=3, unique_by=lambda f: f.slot),
)
def test_any_three_independent_faults_are_each_named_in_one_reply(faults: list[Fault]) -> None:
    body = Body()
    for fault in faults:
        fault.apply(body)
    japanese = reply_for(body)
    for fault in faults:
        assert fault.named_by in japanese, (fault.name, japanese)
    # Nothing was skipped: the office was known, so no note says a check was left out.
    assert "確認は行っていません" not in japanese


def test_each_fault_alone_is_the_only_problem() -> None:
    for fault in FAULTS:
        body = Body()
        fault.apply(body)
        result = check(body)
        assert isinstance(result, list) and len(result) == 1, (fault.name, result)


# --- the three examples -------------------------------------------------------------


def test_impossible_date_and_unknown_id_are_both_named() -> None:
    body = Body(start="2027年2月30日", user_ids=("3KAIZ999",))
    assert [p.code for p in check(body)] == ["date.invalid", "user_id.not_registered"]  # type: ignore[union-attr]


def test_missing_reason_past_date_and_foreign_id_are_all_named() -> None:
    body = Body(reason="", start="2026年11月2日", user_ids=("1ANACA0C",))
    assert [p.code for p in check(body)] == [  # type: ignore[union-attr]
        "field.missing",
        "user_id.not_registered",
        "desired_start_date.past",
    ]


def test_bad_office_code_is_named_beside_a_malformed_id_and_the_skip_is_said() -> None:
    body = Body(office_code="NOPE9", user_ids=("XYZ",))
    result = check(body)
    assert [p.code for p in result] == [  # type: ignore[union-attr]
        "user_id.invalid",
        "office_code.not_yours",
        "note.office_checks_skipped",
    ]
    japanese = reply_for(body)
    assert "『NOPE9』" in japanese and "『XYZ』" in japanese
    # The note is said once, after the numbered problems, and is not counted as one.
    assert "次の2件の問題" in japanese
    assert "※事業所が確定できないため" in japanese
