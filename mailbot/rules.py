"""The rules of docs/domain.md, as pure functions over plain data: the only place each rule lives.

A :class:`RegistryView` (offices, their contacts, user IDs and which open application holds
each; read by mailbot.registry_queries) comes in with the schedule, a calendar and "today";
this module never reads the database or the clock. :func:`check_request` checks a request (a
fully typed one, or what could be read of one) and answers with a :class:`Plan` (what the
application will do) or every problem found.

The view may be partial, but it must hold every office and, for every user code a request
touches (its IDs' codes and its ``abolish_user_codes``), every ID of that code in any office:
rules 3 and 4 look at all of them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

from db.models import ABOLISHED
from mailbot.calendar import BusinessCalendar, next_registration_date
from mailbot.dates import ja_date
from mailbot.draft import PartialDraft, RequestDraft
from mailbot.normalize import USER_CODE_LENGTH
from mailbot.problems import Problem

# The registry's shape and who may apply live in their own modules; named here too, as callers
# have always imported them from the rules.
from mailbot.registry_view import OfficeInfo as OfficeInfo
from mailbot.registry_view import RegistryView as RegistryView
from mailbot.registry_view import UserIdInfo as UserIdInfo
from mailbot.registry_view import UserIdStatus as UserIdStatus
from mailbot.who_may_apply import NOT_AUTHORIZED as NOT_AUTHORIZED
from mailbot.who_may_apply import OFFICE_CHECKS_SKIPPED, contact_address_problems, is_contact
from mailbot.who_may_apply import which_office as which_office

Operation = Literal["business", "management_statistics", "package_software"]

DEFAULT_LEAD_BUSINESS_DAYS = 4


@dataclass(frozen=True)
class Plan:
    """What an accepted application will do; the notices are written from this.

    ``codes_abolished``: codes this application abolishes completely (rule 3), never a shared
    one. ``shared_codes_pending``: for each shared code this office gives up (rule 4), the
    other offices that still have to apply (empty when all have applied).
    """

    office_code: str
    user_ids: tuple[str, ...]
    codes_abolished: tuple[str, ...]
    shared_codes_pending: Mapping[str, tuple[str, ...]]
    desired_start_date: date
    proposed_start_date: date
    start_date_differs: bool
    review_answer_from: date
    applicant_name: str
    applicant_email: str
    applicant_phone: str
    manager_name: str
    manager_email: str
    reason: str
    remarks: str


def check_request(
    request: PartialDraft | RequestDraft,
    sender: str,
    view: RegistryView,
    registration_dates: Iterable[date],
    calendar: BusinessCalendar,
    today: date,
    lead_business_days: int = DEFAULT_LEAD_BUSINESS_DAYS,
) -> Plan | list[Problem]:
    """Check a request (fully typed, or what could be read of it) against every rule; a Plan,
    or all problems.

    The request's own problems (from typing it) come first, then the rules' over the values
    that were good: an unknown ID is named beside a missing reason, a bad date beside a foreign
    ID. What needs the office (rules 1–3, the contacts' addresses) is checked only when the
    office is known; when it is not, a note says those checks were left out.

    A sender who is a contact of no office gets exactly one neutral problem and no hint about
    what the registry holds (intake refuses them before parsing; this is the rules' own guard).
    """
    if isinstance(request, RequestDraft):
        request = _as_partial(request)
    if not any(is_contact(info, sender) for info in view.offices.values()):
        return [NOT_AUTHORIZED]
    problems = list(request.problems)
    office = which_office(request.office_code, sender, view)
    if isinstance(office, Problem):
        problems.append(office)
        problems.append(OFFICE_CHECKS_SKIPPED)
    else:
        problems += contact_address_problems(request, office)
        problems += rule1_unknown_or_foreign_ids(request.user_ids, office.code, view)
        problems += rule2_abolished_or_open_ids(request.user_ids, office.code, view)
        problems += rule3_code_abolition_needs_every_id(
            request.user_ids, request.abolish_user_codes, office.code, view
        )
    start: date | Problem | None = None
    if request.desired_start_date is not None:
        start = rule5_start_date(
            request.desired_start_date, registration_dates, calendar, today, lead_business_days
        )
        if isinstance(start, Problem):
            problems.append(start)
    draft = request.complete()
    if problems or draft is None or isinstance(office, Problem) or not isinstance(start, date):
        return problems
    completed = codes_completed(draft.user_ids, office.code, view)
    codes_abolished, pending = rule4_shared_codes(completed, office.code, view)
    return Plan(
        office_code=office.code,
        user_ids=draft.user_ids,
        codes_abolished=codes_abolished,
        shared_codes_pending=pending,
        desired_start_date=draft.desired_start_date,
        proposed_start_date=start,
        start_date_differs=start != draft.desired_start_date,
        review_answer_from=calendar.next_business_day(today),
        applicant_name=draft.applicant_name,
        applicant_email=draft.applicant_email,
        applicant_phone=draft.applicant_phone,
        manager_name=draft.manager_name,
        manager_email=draft.manager_email,
        reason=draft.reason,
        remarks=draft.remarks,
    )


def _as_partial(draft: RequestDraft) -> PartialDraft:
    return PartialDraft(
        office_code=draft.office_code,
        user_ids=draft.user_ids,
        abolish_user_codes=draft.abolish_user_codes,
        desired_start_date=draft.desired_start_date,
        reason=draft.reason,
        applicant_name=draft.applicant_name,
        applicant_phone=draft.applicant_phone,
        applicant_email=draft.applicant_email,
        manager_name=draft.manager_name,
        manager_email=draft.manager_email,
        remarks=draft.remarks,
        source=draft.source,
    )


# --- rules 1–3 -------------------------------------------------------------------------------


def rule1_unknown_or_foreign_ids(
    user_ids: Iterable[str], office_code: str, view: RegistryView
) -> list[Problem]:
    """Rule 1: every ID must exist and belong to the office; unknown and foreign IDs read alike."""
    return [
        _not_registered("user_id", "user_ids", user_id, "利用者ID", "User ID")
        for user_id in user_ids
        if not _belongs_to(view.user_ids.get(user_id), office_code)
    ]


def rule2_abolished_or_open_ids(
    user_ids: Iterable[str], office_code: str, view: RegistryView
) -> list[Problem]:
    """Rule 2: an own ID already abolished, or held by another open application, is refused."""
    problems: list[Problem] = []
    for user_id in user_ids:
        info = view.user_ids.get(user_id)
        if info is None or not _belongs_to(info, office_code):
            continue  # rule 1 reports it, without saying more
        if not info.is_active:
            problems.append(_already_abolished(info))
        elif info.open_receipt_no is not None:
            problems.append(_in_open_application(info.user_id, info.open_receipt_no))
    return problems


def rule3_code_abolition_needs_every_id(
    user_ids: Iterable[str], user_codes: Iterable[str], office_code: str, view: RegistryView
) -> list[Problem]:
    """Rule 3: a code in ``abolish_user_codes`` needs every active ID of it in the request.

    Decision: an ID of the code held by another open application counts as missing too (the
    problem names that receipt number): the code is abolished with the application that
    abolishes its last IDs, never ahead of an application that may still be rejected.
    A code the office does not hold reads like rule 1's unknown ID.
    """
    requested = set(user_ids)
    problems: list[Problem] = []
    for code in user_codes:
        own = [info for info in view.ids_of_code(code) if info.office_code == office_code]
        active = [info for info in own if info.is_active]
        if not own:
            problems.append(
                _not_registered(
                    "user_code", "abolish_user_codes", code, "利用者コード", "User code"
                )
            )
        elif not active:
            problems.append(_code_already_abolished(code))
        else:
            missing = [info for info in active if info.user_id not in requested]
            if missing:
                problems.append(_code_ids_missing(code, missing))
    return problems


def codes_completed(
    user_ids: Collection[str], office_code: str, view: RegistryView
) -> tuple[str, ...]:
    """Rule 3: the codes whose every active ID of this office is in the request, in order.

    Listing all of a code's IDs abolishes the code too, whether or not the form named it in
    ``abolish_user_codes``.
    """
    codes = dict.fromkeys(user_id[:USER_CODE_LENGTH] for user_id in user_ids)
    requested = set(user_ids)
    return tuple(
        code
        for code in codes
        if all(
            info.user_id in requested
            for info in view.ids_of_code(code)
            if info.office_code == office_code and info.is_active
        )
    )


# --- rule 4 ----------------------------------------------------------------------------------


def rule4_shared_codes(
    completed_codes: Iterable[str], office_code: str, view: RegistryView
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """Rule 4: split completed codes into (abolished by this application, shared → pending).

    A code other offices still hold active IDs of is shared: this application abolishes only
    its own IDs, and the code goes when every sharing office has applied. The offices still to
    apply are those with an active ID of the code not held by an open application.
    """
    abolished: list[str] = []
    pending: dict[str, tuple[str, ...]] = {}
    for code in completed_codes:
        others = [
            info
            for info in view.ids_of_code(code)
            if info.office_code != office_code and info.is_active
        ]
        if not others:
            abolished.append(code)
            continue
        still_to_apply = {info.office_code for info in others if info.open_receipt_no is None}
        pending[code] = tuple(sorted(still_to_apply))
    return tuple(abolished), pending


# --- rule 5 ----------------------------------------------------------------------------------


def rule5_start_date(
    desired: date,
    registration_dates: Iterable[date],
    calendar: BusinessCalendar,
    today: date,
    lead_business_days: int,
) -> date | Problem:
    """Rule 5: the start date proposed for ``desired``, or why it cannot be.

    Past dates and dates sooner than ``lead_business_days`` business days after today are
    refused, naming the earliest possible date. Otherwise the proposal is the first system
    registration date on or after the desired date (it may differ: the notices say so).
    """
    dates = list(registration_dates)
    earliest = calendar.add_business_days(today, lead_business_days)
    if desired < today:
        return _start_date_problem("desired_start_date.past", desired, earliest, dates)
    if desired < earliest:
        return _start_date_problem("desired_start_date.too_soon", desired, earliest, dates)
    proposed = next_registration_date(dates, desired)
    if proposed is None:
        return _no_registration_date(desired)
    return proposed


# --- rule 8 ----------------------------------------------------------------------------------


def can_perform(
    operation: Operation | str,
    user_status: UserIdStatus | str,
    abolished_on: date | None,
    code_abolished: bool,
    today: date,
) -> tuple[bool, str]:
    """Rule 8: may this user ID do ``operation`` today? Returns (allowed, reason "ja / en").

    From the start date on an abolished ID does no business except management statistics
    retrieval. ``abolished_on`` may be a future start date of an approved application (the ID
    is still active until then). ``code_abolished`` is whether the ID's user code is abolished
    as of ``today``; package software tied to an abolished code cannot be used. Plain ``str``
    is accepted for the database's columns; an unknown operation raises ValueError.
    """
    id_abolished = (abolished_on is not None and today >= abolished_on) or (
        user_status == ABOLISHED and abolished_on is None
    )
    if operation == "management_statistics":
        return True, "管理統計資料取得は廃止後も行えます / Management statistics stay available"
    if operation == "package_software":
        if code_abolished:
            return False, (
                "廃止された利用者コードのパッケージソフトは利用できません / "
                "Package software of an abolished user code cannot be used"
            )
        return True, "利用者コードは有効です / The user code is active"
    if operation == "business":
        if id_abolished:
            return False, (
                "廃止された利用者IDは管理統計資料取得を除き業務を行えません / "
                "An abolished user ID can do no business except management statistics"
            )
        return True, "利用者IDは有効です / The user ID is active"
    raise ValueError(f"unknown operation: {operation!r}")


# --- helpers and messages ------------------------------------------------------------------


def _belongs_to(info: UserIdInfo | None, office_code: str) -> bool:
    return info is not None and info.office_code == office_code


def _not_registered(kind: str, field: str, value: str, label_ja: str, label_en: str) -> Problem:
    return Problem(
        code=f"{kind}.not_registered",
        field=field,
        value=value,
        message_ja=(
            f"{label_ja}『{value}』は貴事業所に登録されていません。"
            f"貴事業所の{label_ja}か確認し、正しい{label_ja}を記入してください。"
        ),
        message_en=(
            f"{label_en} '{value}' is not registered to your office. "
            f"Please check it and write one of your office's {label_en.lower()}s."
        ),
    )


def _already_abolished(info: UserIdInfo) -> Problem:
    when_ja = f"（{ja_date(info.abolished_on)}廃止）" if info.abolished_on else ""
    when_en = f" (on {info.abolished_on.isoformat()})" if info.abolished_on else ""
    return Problem(
        code="user_id.already_abolished",
        field="user_ids",
        value=info.user_id,
        message_ja=(
            f"利用者ID『{info.user_id}』は既に廃止されています{when_ja}。申込から削除してください。"
        ),
        message_en=(
            f"User ID '{info.user_id}' is already abolished{when_en}. "
            "Please remove it from the request."
        ),
    )


def _in_open_application(user_id: str, receipt_no: str) -> Problem:
    return Problem(
        code="user_id.in_open_application",
        field="user_ids",
        value=user_id,
        message_ja=(
            f"利用者ID『{user_id}』は申込受付番号 {receipt_no} で既に申込中です。"
            "申込から削除するか、お問い合わせの際は申込受付番号をお伝えください。"
        ),
        message_en=(
            f"User ID '{user_id}' is already in application {receipt_no}. Please remove it "
            "from this request, or quote that receipt number in inquiries."
        ),
    )


def _code_already_abolished(code: str) -> Problem:
    return Problem(
        code="user_code.already_abolished",
        field="abolish_user_codes",
        value=code,
        message_ja=(
            f"利用者コード『{code}』の利用者IDは既にすべて廃止されています。"
            "「利用者コードの廃止」から削除してください。"
        ),
        message_en=(
            f"Every user ID of user code '{code}' is already abolished. "
            "Please remove it from abolish_user_codes."
        ),
    )


def _code_ids_missing(code: str, missing: list[UserIdInfo]) -> Problem:
    listed_ja = "、".join(
        info.user_id
        + (f"（申込受付番号 {info.open_receipt_no} で申込中）" if info.open_receipt_no else "")
        for info in missing
    )
    listed_en = ", ".join(
        info.user_id + (f" (in application {info.open_receipt_no})" if info.open_receipt_no else "")
        for info in missing
    )
    return Problem(
        code="user_code.ids_missing",
        field="user_ids",
        value=code,
        message_ja=(
            f"利用者コード『{code}』を廃止するには、紐付くすべての利用者IDの廃止が必要です。"
            f"次の利用者IDが申込にありません: {listed_ja}。"
            "これらを「廃止する利用者ID」に加えるか、利用者コードの廃止を取りやめてください。"
        ),
        message_en=(
            f"Abolishing user code '{code}' requires abolishing every user ID of it. "
            f"Missing from the request: {listed_en}. Please add them to user_ids, or do not "
            "ask to abolish the code."
        ),
    )


def _start_date_problem(code: str, desired: date, earliest: date, dates: list[date]) -> Problem:
    suggestion = next_registration_date(dates, earliest)
    suggest_ja = f"（直近のシステム登録日: {ja_date(suggestion)}）" if suggestion else ""
    suggest_en = f" (next registration date: {suggestion.isoformat()})" if suggestion else ""
    why_ja = "過去の日付です" if code.endswith("past") else "審査に必要な期間が取れません"
    why_en = "is in the past" if code.endswith("past") else "is too soon to be reviewed"
    return Problem(
        code=code,
        field="desired_start_date",
        value=desired.isoformat(),
        message_ja=(
            f"利用開始希望日『{ja_date(desired)}』は{why_ja}。"
            f"{ja_date(earliest)}以降のスケジュール表のシステム登録日を記入してください{suggest_ja}。"
        ),
        message_en=(
            f"The desired start date {desired.isoformat()} {why_en}. Please choose a system "
            f"registration date on or after {earliest.isoformat()}{suggest_en}."
        ),
    )


def _no_registration_date(desired: date) -> Problem:
    return Problem(
        code="desired_start_date.no_registration_date",
        field="desired_start_date",
        value=desired.isoformat(),
        message_ja=(
            f"スケジュール表に{ja_date(desired)}以降のシステム登録日がありません。"
            "スケジュール表にある日付を記入するか、NACCSセンターにお問い合わせください。"
        ),
        message_en=(
            f"The schedule has no system registration date on or after {desired.isoformat()}. "
            "Please choose a date within the schedule, or ask the NACCS Center."
        ),
    )
