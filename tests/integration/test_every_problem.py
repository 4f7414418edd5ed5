"""The issue's three requests over real SMTP: each gets one reply naming all of its problems.

Tried as a new user would, each of these used to get a reply naming only the first kind of
problem. Now the registry is checked beside the form: one round trip, one reply.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from db.engine import session_scope
from mailbot.registry import import_registry
from tests.support.harness import Harness, body_text
from tests.support.requests import KATO, YAMADA, form, mail

# Another company's office holding 7TOKY001, beside the demo registry.
OTHER_OFFICE = (
    "office_code,company,office,department,contact_emails,user_id\n"
    "YKH01,△△株式会社,横浜事業所,輸入部,suzuki@example.org,7TOKY001\n"
)


@pytest.fixture
def harness_with_other_office(harness: Harness, tmp_path: Path) -> Harness:
    registry = tmp_path / "other-office.csv"
    registry.write_text(OTHER_OFFICE, encoding="utf-8")
    with session_scope(harness.engine) as session:
        import_registry(session, registry)
    return harness


def only_reply(harness: Harness, raw: bytes, sender: str = YAMADA) -> str:
    out = harness.round_trip(raw, mail_from=sender)
    assert len(out) == 1, [str(m["Subject"]) for m in out]
    (reply,) = out
    assert "受け付けできませんでした" in str(reply["Subject"])
    assert harness.applications() == []
    return body_text(reply)


def japanese(text: str) -> str:
    return text.split("[English]")[0]


def test_impossible_date_and_unknown_id(harness: Harness) -> None:
    text = only_reply(harness, mail(form("3KAIZ999", start="2027年2月30日")))
    part = japanese(text)
    assert "次の2件の問題" in part
    assert "利用開始希望日『2027年2月30日』は存在しない日付です" in part
    assert "利用者ID『3KAIZ999』は貴事業所に登録されていません" in part


def test_no_reason_past_date_and_another_offices_id(harness_with_other_office: Harness) -> None:
    body = form("7TOKY001", start="2026年11月2日", reason="")
    part = japanese(only_reply(harness_with_other_office, mail(body)))
    assert "次の3件の問題" in part
    assert "「変更する理由」が記入されていません" in part
    assert "利用開始希望日『2026年11月2日（月）』は過去の日付です" in part
    assert "利用者ID『7TOKY001』は貴事業所に登録されていません" in part
    for secret in ("YKH01", "横浜", "△△"):  # nothing about the other office
        assert secret not in part


def test_bad_office_code_beside_a_malformed_id(harness: Harness) -> None:
    part = japanese(
        only_reply(harness, mail(form("XYZ", start="2026年12月15日", office_code="NOPE9")))
    )
    assert "次の2件の問題" in part
    assert "利用者ID『XYZ』は8桁の英数字ではありません" in part
    assert "事業所コード『NOPE9』は、このメールアドレスが連絡先として登録されている事業所" in part
    assert "「事業所コード」を TYO01 にするか" in part
    assert "※事業所が確定できないため" in part  # what was not checked, said once


def test_another_existing_office_reads_like_a_missing_one(harness: Harness) -> None:
    # A contact of Tokyo naming Osaka's code and ID gets the reply it would get for NOPE9:
    # nothing tells it Osaka exists, nor whose the ID is.
    osaka = only_reply(harness, mail(form("1ANACA0C", start="2026年12月15日", office_code="OSK01")))
    harness.now = harness.now.replace(hour=2)  # a second reply, another Message-ID
    nowhere = only_reply(
        harness, mail(form("1ANACA0C", start="2026年12月15日", office_code="NOPE9"))
    )
    assert osaka.replace("OSK01", "X") == nowhere.replace("NOPE9", "X")
    assert "大阪" not in osaka


def test_the_problem_reply_lists_the_next_registration_dates(harness: Harness) -> None:
    part = japanese(only_reply(harness, mail(form("3KAIZ999", start="2026年12月15日"))))
    # Friday 2026-11-27: 12/1 is too soon (4 business days: 12/3), 12/8 is the earliest.
    assert "  2026年12月1日（火）　（本日のお申込みでは指定できません）" in part
    assert "  2026年12月8日（火）　← 本日お申込みの場合の最短の利用開始日" in part
    assert "  2027年1月19日（火）\n" in part  # the sixth
    assert "2027年1月26日" not in part  # the seventh is not listed


def test_a_manager_who_is_no_contact_is_named_with_the_other_problems(harness: Harness) -> None:
    body = form("9ZZZZ999", start="2026年12月15日", manager_email="boss@example.net")
    part = japanese(only_reply(harness, mail(body)))
    assert (
        "管理責任者メールアドレス『boss@example.net』は、事業所 TYO01 の登録連絡先ではありません"
        in part
    )
    assert "利用者ID『9ZZZZ999』" in part


def test_a_contact_of_another_office_is_told_the_office_code_is_not_theirs(
    harness: Harness,
) -> None:
    body = form("1ANACA0A", start="2026年12月15日", manager_email=KATO)
    part = japanese(only_reply(harness, mail(body, sender=KATO), sender=KATO))
    assert "事業所コード『TYO01』は、このメールアドレスが連絡先として登録されている" in part
    assert "OSK01" in part  # Kato's own office
    assert "東京" not in part and "1ANACA0A』は" not in part
