"""The rules of docs/domain.md, one or more tests each, on a registry like the demo one."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from mailbot.calendar import BusinessCalendar
from mailbot.draft import RequestDraft
from mailbot.problems import Problem
from mailbot.rules import (
    NOT_AUTHORIZED,
    OfficeInfo,
    Plan,
    RegistryView,
    UserIdInfo,
    can_perform,
    check_request,
)

TODAY = date(2026, 11, 19)  # a Thursday; 11/23 is 勤労感謝の日
SCHEDULE = [date(2026, 12, 1), date(2026, 12, 8), date(2026, 12, 15), date(2027, 1, 12)]
CAL = BusinessCalendar()

YAMADA = "yamada@example.co.jp"  # contact of TYO01
SATO = "sato@example.co.jp"  # contact of TYO01
KATO = "kato@example.co.jp"  # contact of OSK01
OUTSIDER = "mallory@example.net"


def office(code: str, name: str, *contacts: str) -> OfficeInfo:
    return OfficeInfo(code, "○○株式会社", name, "通関部", frozenset(contacts))


def uid(user_id: str, office_code: str, **kw: object) -> UserIdInfo:
    return UserIdInfo(user_id, office_code, **kw)  # type: ignore[arg-type]


OFFICES = {
    "TYO01": office("TYO01", "東京事業所", YAMADA, SATO),
    "OSK01": office("OSK01", "大阪事業所", KATO, "ito@example.co.jp"),
    "NGO01": office("NGO01", "名古屋事業所", "suzuki@example.co.jp"),
}
IDS = [
    # 1ANAC is shared by TYO01, OSK01 and NGO01 (as in registry-demo.csv, plus Nagoya).
    uid("1ANACA0A", "TYO01", status="active"),
    uid("1ANACA0B", "TYO01", status="active"),
    uid("1ANAC001", "TYO01", status="active"),
    uid("1ANACA0D", "TYO01", status="abolished", abolished_on=date(2026, 6, 2)),
    uid("1ANACA0C", "OSK01", status="active"),
    uid("1ANACN01", "NGO01", status="active"),
    # 3CDEF is TYO01's own; 3CDEF002 is already in an open application.
    uid("3CDEFA01", "TYO01", status="active"),
    uid("3CDEF001", "TYO01", status="active"),
    uid("3CDEF002", "TYO01", status="active", open_receipt_no="260011A"),
    # 4GHIJ is TYO01's own, nothing pending.
    uid("4GHIJA01", "TYO01", status="active"),
    uid("4GHIJ001", "TYO01", status="active"),
    # 2BXYZ belongs to Osaka only.
    uid("2BXYZ001", "OSK01", status="active"),
    uid("2BXYZ002", "OSK01", status="active"),
]


def view(ids: list[UserIdInfo] = IDS, offices: dict[str, OfficeInfo] = OFFICES) -> RegistryView:
    return RegistryView(offices=offices, user_ids={info.user_id: info for info in ids})


def draft(*user_ids: str, **changes: object) -> RequestDraft:
    base = RequestDraft(
        office_code="TYO01",
        user_ids=user_ids,
        abolish_user_codes=(),
        desired_start_date=date(2026, 12, 1),
        reason="事業所の統合のため",
        applicant_name="山田 太郎",
        applicant_phone="03-1234-5678",
        applicant_email=YAMADA,
        manager_name="佐藤 花子",
        manager_email=SATO,
        remarks="",
        source="本文",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def run(
    request: RequestDraft, sender: str = YAMADA, registry: RegistryView | None = None
) -> Plan | list[Problem]:
    return check_request(request, sender, registry or view(), SCHEDULE, CAL, TODAY, 4)


def plan_of(request: RequestDraft, sender: str = YAMADA) -> Plan:
    result = run(request, sender)
    assert isinstance(result, Plan), result
    return result


def problems_of(request: RequestDraft, sender: str = YAMADA) -> list[Problem]:
    result = run(request, sender)
    assert isinstance(result, list), result
    return result


# --- who may apply ----------------------------------------------------------------------------


def test_who_may_apply_registered_contact_gets_a_plan() -> None:
    plan = plan_of(draft("4GHIJA01"))
    assert plan.office_code == "TYO01"
    assert plan.user_ids == ("4GHIJA01",)
    assert plan.applicant_email == YAMADA and plan.manager_email == SATO


def test_who_may_apply_office_comes_from_the_senders_only_office() -> None:
    assert plan_of(draft("4GHIJA01", office_code=None)).office_code == "TYO01"


def test_who_may_apply_addresses_compare_without_case() -> None:
    request = draft("4GHIJA01", manager_email="Sato@example.co.jp")
    assert plan_of(request, sender="YAMADA@Example.co.jp").office_code == "TYO01"


def test_who_may_apply_outsider_gets_neutral_refusal_whatever_ids() -> None:
    existing = run(draft("1ANACA0A", "1ANACA0B"), sender=OUTSIDER)
    nonexistent = run(draft("9ZZZZ999"), sender=OUTSIDER)
    no_office_code = run(draft("1ANACA0A", office_code=None), sender=OUTSIDER)
    unknown_office = run(draft("1ANACA0A", office_code="XXX99"), sender=OUTSIDER)
    assert existing == nonexistent == no_office_code == unknown_office == [NOT_AUTHORIZED]
    (refusal,) = existing
    assert refusal.code == "sender.not_authorized"
    for secret in ("1ANAC", "TYO01", "東京", "yamada", "sato"):
        assert secret not in refusal.message_ja + refusal.message_en


def test_who_may_apply_refusal_hides_every_other_problem() -> None:
    bad = draft("9ZZZZ999", desired_start_date=date(2020, 1, 1))
    assert run(bad, sender=OUTSIDER) == [NOT_AUTHORIZED]


def codes(result: Plan | list[Problem]) -> list[str]:
    assert isinstance(result, list), result
    return [problem.code for problem in result]


def test_who_may_apply_another_office_code_reads_like_an_unknown_one() -> None:
    # Kato is Osaka's contact: naming Tokyo's office (or one that does not exist) is a problem
    # with the office code, worded alike, so the reply tells nothing about other offices.
    tokyo = run(draft("1ANACA0A", manager_email=KATO), sender=KATO)
    nowhere = run(draft("1ANACA0A", manager_email=KATO, office_code="TYO99"), sender=KATO)
    assert codes(tokyo) == ["office_code.not_yours", "note.office_checks_skipped"]
    assert isinstance(tokyo, list) and isinstance(nowhere, list)
    assert [p.message_ja.replace("TYO01", "X") for p in tokyo] == [
        p.message_ja.replace("TYO99", "X") for p in nowhere
    ]
    assert "OSK01" in tokyo[0].message_ja  # the sender's own office, which they may know
    for secret in ("東京", "yamada", "1ANACA0A"):
        assert secret not in tokyo[0].message_ja + tokyo[0].message_en


def test_who_may_apply_unknown_office_code_is_named_and_id_checks_wait_for_it() -> None:
    result = run(draft("1ANACA0A", "9ZZZZ999", office_code="TYO99"))
    assert codes(result) == ["office_code.not_yours", "note.office_checks_skipped"]


def test_who_may_apply_unknown_office_code_does_not_hide_a_bad_date() -> None:
    result = run(draft("1ANACA0A", office_code="TYO99", desired_start_date=date(2020, 1, 1)))
    assert codes(result) == [
        "office_code.not_yours",
        "note.office_checks_skipped",
        "desired_start_date.past",
    ]


def test_who_may_apply_manager_must_be_a_registered_contact() -> None:
    for address in ("boss@example.co.jp", KATO):
        (problem,) = problems_of(draft("4GHIJA01", manager_email=address))
        assert (problem.code, problem.value) == ("manager_email.not_a_contact", address)
        assert "TYO01" in problem.message_ja


def test_who_may_apply_applicant_address_must_be_a_registered_contact() -> None:
    # Notices go to the applicant too (rule 7): only people the contract names may get them.
    (problem,) = problems_of(draft("4GHIJA01", applicant_email="someone@example.net"))
    assert problem.code == "applicant_email.not_a_contact"
    assert isinstance(run(draft("4GHIJA01", applicant_email=SATO)), Plan)


def test_who_may_apply_contact_of_several_offices_is_asked_for_the_office_code() -> None:
    offices = {**OFFICES, "OSK01": office("OSK01", "大阪事業所", KATO, YAMADA)}
    result = run(draft("4GHIJA01", office_code=None), registry=view(offices=offices))
    assert isinstance(result, list)
    problem, note = result
    assert note.code == "note.office_checks_skipped"
    assert problem.code == "office_code.required" and problem.field == "office_code"
    assert "OSK01" in problem.message_ja and "TYO01" in problem.message_ja
    # With the code, the same request goes through.
    assert isinstance(run(draft("4GHIJA01"), registry=view(offices=offices)), Plan)


# --- rule 1 -----------------------------------------------------------------------------------


def test_rule1_unknown_id_is_named() -> None:
    (problem,) = problems_of(draft("4GHIJA01", "9ZZZZ999"))
    assert problem.code == "user_id.not_registered"
    assert problem.value == "9ZZZZ999"
    assert "9ZZZZ999" in problem.message_ja and "9ZZZZ999" in problem.message_en


def test_rule1_foreign_id_reads_exactly_like_an_unknown_one() -> None:
    foreign, unknown = problems_of(draft("2BXYZ001", "9ZZZZ999"))
    assert foreign.code == unknown.code == "user_id.not_registered"
    assert foreign.message_ja.replace("2BXYZ001", "X") == unknown.message_ja.replace(
        "9ZZZZ999", "X"
    )
    assert foreign.message_en.replace("2BXYZ001", "X") == unknown.message_en.replace(
        "9ZZZZ999", "X"
    )


# --- rule 2 -----------------------------------------------------------------------------------


def test_rule2_already_abolished_id_is_refused() -> None:
    (problem,) = problems_of(draft("1ANACA0D"))
    assert problem.code == "user_id.already_abolished" and problem.value == "1ANACA0D"
    assert "2026年6月2日" in problem.message_ja


def test_rule2_id_in_open_application_names_the_receipt_number() -> None:
    (problem,) = problems_of(draft("3CDEF002"))
    assert problem.code == "user_id.in_open_application" and problem.value == "3CDEF002"
    assert "260011A" in problem.message_ja and "260011A" in problem.message_en


# --- rule 3 -----------------------------------------------------------------------------------


def test_rule3_code_with_ids_left_out_lists_the_missing_ids() -> None:
    (problem,) = problems_of(draft("4GHIJA01", abolish_user_codes=("4GHIJ",)))
    assert problem.code == "user_code.ids_missing" and problem.value == "4GHIJ"
    assert "4GHIJ001" in problem.message_ja and "4GHIJ001" in problem.message_en
    assert "4GHIJA01" not in problem.message_ja


def test_rule3_missing_id_held_by_another_application_names_its_receipt() -> None:
    (problem,) = problems_of(draft("3CDEFA01", "3CDEF001", abolish_user_codes=("3CDEF",)))
    assert problem.code == "user_code.ids_missing"
    assert "3CDEF002" in problem.message_ja and "260011A" in problem.message_ja


def test_rule3_code_with_every_id_is_abolished() -> None:
    plan = plan_of(draft("4GHIJA01", "4GHIJ001", abolish_user_codes=("4GHIJ",)))
    assert plan.codes_abolished == ("4GHIJ",)


def test_rule3_listing_every_id_abolishes_the_code_too() -> None:
    assert plan_of(draft("4GHIJ001", "4GHIJA01")).codes_abolished == ("4GHIJ",)


def test_rule3_some_ids_only_keep_the_code() -> None:
    plan = plan_of(draft("4GHIJ001"))
    assert plan.codes_abolished == () and dict(plan.shared_codes_pending) == {}


def test_rule3_code_the_office_does_not_hold_reads_like_an_unknown_id() -> None:
    foreign, unknown = problems_of(draft("4GHIJ001", abolish_user_codes=("2BXYZ", "9ZZZZ")))
    assert foreign.code == unknown.code == "user_code.not_registered"
    assert (foreign.value, unknown.value) == ("2BXYZ", "9ZZZZ")
    assert foreign.message_ja.replace("2BXYZ", "X") == unknown.message_ja.replace("9ZZZZ", "X")


def test_rule3_code_whose_ids_are_all_abolished() -> None:
    ids = [*IDS, uid("5KLMN001", "TYO01", status="abolished")]
    result = run(draft("4GHIJ001", abolish_user_codes=("5KLMN",)), registry=view(ids))
    assert isinstance(result, list)
    assert [p.code for p in result] == ["user_code.already_abolished"]


# --- rule 4 -----------------------------------------------------------------------------------


def test_rule4_shared_code_lists_offices_still_to_apply() -> None:
    plan = plan_of(draft("1ANACA0A", "1ANACA0B", "1ANAC001", abolish_user_codes=("1ANAC",)))
    assert plan.user_ids == ("1ANACA0A", "1ANACA0B", "1ANAC001")
    assert plan.codes_abolished == ()  # not abolished until every office has applied
    assert dict(plan.shared_codes_pending) == {"1ANAC": ("NGO01", "OSK01")}


def test_rule4_office_with_an_open_application_has_applied() -> None:
    ids = [
        dataclasses.replace(i, open_receipt_no="260020A") if i.office_code == "OSK01" else i
        for i in IDS
    ]
    result = run(draft("1ANACA0A", "1ANACA0B", "1ANAC001"), registry=view(ids))
    assert isinstance(result, Plan)
    assert dict(result.shared_codes_pending) == {"1ANAC": ("NGO01",)}


def test_rule4_last_office_to_apply_leaves_nobody_pending() -> None:
    ids = [
        dataclasses.replace(i, open_receipt_no="260020A") if i.office_code != "TYO01" else i
        for i in IDS
    ]
    result = run(draft("1ANACA0A", "1ANACA0B", "1ANAC001"), registry=view(ids))
    assert isinstance(result, Plan)
    assert dict(result.shared_codes_pending) == {"1ANAC": ()}
    assert result.codes_abolished == ()  # shared codes go when their last IDs go


def test_rule4_office_whose_ids_are_abolished_no_longer_shares() -> None:
    ids = [
        dataclasses.replace(i, status="abolished") if i.office_code != "TYO01" else i for i in IDS
    ]
    result = run(draft("1ANACA0A", "1ANACA0B", "1ANAC001"), registry=view(ids))
    assert isinstance(result, Plan)
    assert result.codes_abolished == ("1ANAC",)
    assert dict(result.shared_codes_pending) == {}


# --- rule 5 -----------------------------------------------------------------------------------


def test_rule5_registration_date_is_kept() -> None:
    plan = plan_of(draft("4GHIJ001", desired_start_date=date(2026, 12, 8)))
    assert plan.proposed_start_date == date(2026, 12, 8)
    assert plan.start_date_differs is False


def test_rule5_other_date_moves_to_the_next_registration_date() -> None:
    plan = plan_of(draft("4GHIJ001", desired_start_date=date(2026, 12, 2)))
    assert plan.desired_start_date == date(2026, 12, 2)
    assert plan.proposed_start_date == date(2026, 12, 8)
    assert plan.start_date_differs is True


def test_rule5_past_date_is_refused() -> None:
    (problem,) = problems_of(draft("4GHIJ001", desired_start_date=date(2026, 11, 18)))
    assert problem.code == "desired_start_date.past" and problem.field == "desired_start_date"
    assert "2026年11月18日" in problem.message_ja


def test_rule5_too_soon_names_the_earliest_date() -> None:
    # Four business days after Thu 11/19, skipping the weekend and Mon 11/23: Thu 11/26.
    (problem,) = problems_of(draft("4GHIJ001", desired_start_date=date(2026, 11, 25)))
    assert problem.code == "desired_start_date.too_soon"
    assert "2026年11月26日（木）" in problem.message_ja and "2026-11-26" in problem.message_en
    assert "2026年12月1日（火）" in problem.message_ja  # the registration date to choose


def test_rule5_earliest_date_itself_is_accepted() -> None:
    plan = plan_of(draft("4GHIJ001", desired_start_date=date(2026, 11, 26)))
    assert plan.proposed_start_date == date(2026, 12, 1)


def test_rule5_lead_is_a_setting() -> None:
    request = draft("4GHIJ001", desired_start_date=date(2026, 12, 1))
    assert isinstance(check_request(request, YAMADA, view(), SCHEDULE, CAL, TODAY, 4), Plan)
    result = check_request(request, YAMADA, view(), SCHEDULE, CAL, TODAY, 10)
    assert isinstance(result, list) and result[0].code == "desired_start_date.too_soon"


def test_rule5_no_registration_date_after_the_desired_one() -> None:
    (problem,) = problems_of(draft("4GHIJ001", desired_start_date=date(2027, 2, 1)))
    assert problem.code == "desired_start_date.no_registration_date"


# --- rule 6 and collecting ---------------------------------------------------------------------


def test_rule6_review_answer_from_the_next_business_day() -> None:
    friday = date(2026, 11, 20)
    result = check_request(draft("4GHIJ001"), YAMADA, view(), SCHEDULE, CAL, friday, 4)
    assert isinstance(result, Plan)
    assert result.review_answer_from == date(2026, 11, 24)  # after the weekend and 11/23


def test_rules_1_to_5_report_every_problem_at_once() -> None:
    request = draft(
        "9ZZZZ999",
        "1ANACA0D",
        "3CDEF002",
        "4GHIJA01",
        abolish_user_codes=("4GHIJ",),
        desired_start_date=date(2026, 11, 1),
    )
    codes = [p.code for p in problems_of(request)]
    assert codes == [
        "user_id.not_registered",
        "user_id.already_abolished",
        "user_id.in_open_application",
        "user_code.ids_missing",
        "desired_start_date.past",
    ]


# --- rule 8 -----------------------------------------------------------------------------------


START = date(2026, 12, 1)


def test_rule8_abolished_id_does_no_business_from_the_start_date() -> None:
    allowed, reason = can_perform("business", "abolished", START, False, START)
    assert not allowed and "業務" in reason
    assert can_perform("business", "active", START, False, date(2026, 11, 30))[0]
    assert not can_perform("business", "active", START, False, START)[0]


def test_rule8_management_statistics_stay_available() -> None:
    assert can_perform("management_statistics", "abolished", START, True, date(2027, 1, 1))[0]


def test_rule8_package_software_of_an_abolished_code_cannot_be_used() -> None:
    allowed, reason = can_perform("package_software", "abolished", START, True, START)
    assert not allowed and "パッケージソフト" in reason
    assert can_perform("package_software", "abolished", START, False, START)[0]


def test_rule8_unknown_operation_is_an_error() -> None:
    with pytest.raises(ValueError):
        can_perform("teleport", "active", None, False, START)
