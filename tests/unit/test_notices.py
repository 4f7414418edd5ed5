"""The notice catalogue: every mail template has one entry, every entry its template, and
dedupe keys keep the formats stored in existing outbox rows (in Python and in SQL)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sqlalchemy import String, create_engine, literal, select

from mailbot import notices
from mailbot.notices import CATALOGUE, Audience

MAIL_TEMPLATES = Path(notices.__file__).parent / "templates" / "mail"


def test_every_entry_has_its_template_in_its_audiences_folder() -> None:
    for notice in CATALOGUE:
        assert (MAIL_TEMPLATES / notice.template).is_file(), notice.template
        assert notice.template.startswith(f"{notice.audience}/"), notice


def test_every_mail_template_is_named_by_one_entry() -> None:
    named = [notice.template for notice in CATALOGUE]
    templates = sorted(
        str(path.relative_to(MAIL_TEMPLATES))
        for path in MAIL_TEMPLATES.rglob("*.txt.j2")
        if not path.name.startswith("_")  # partials, included by the templates
    )
    assert sorted(named) == templates


def test_kinds_are_unique_but_for_the_two_forms_of_help() -> None:
    kinds = [notice.kind for notice in CATALOGUE]
    assert [k for k in set(kinds) if kinds.count(k) > 1] == ["help"]
    assert notices.HELP.subject == notices.HELP_OUTSIDER.subject


def test_replies_to_a_sender_are_capped_and_notices_about_an_application_are_not() -> None:
    about_an_application = (
        notices.RECEIPT_COMPLETE,
        notices.CONFIRMATION_COMPLETE,
        notices.REJECTION,
        notices.WITHDRAWN,
        notices.CANCELLED,
        notices.APPLIED,
        notices.REVIEW_REQUEST,
        notices.APPROVED_STAFF,
        notices.WITHDRAWN_STAFF,
        notices.CANCELLED_STAFF,
        notices.REVIEW_REMINDER,
    )
    replies_to_a_sender = (
        notices.HELP,
        notices.HELP_OUTSIDER,
        notices.REFUSAL,
        notices.REQUEST_PROBLEMS,
        notices.UNREADABLE,
        notices.CONTRACT,
        notices.WITHDRAWAL_TOO_LATE,
        notices.FOLLOW_UP_STAFF,  # counted against the applicant who wrote
        notices.ALREADY_DECIDED,
        notices.DECISION_UNREADABLE,
        notices.DECISION_REFUSED,
        notices.REPLY_REFUSED,
        notices.APPROVAL_RECORDED,
        notices.CANCEL_UNREADABLE,
        notices.CANCEL_REFUSED,
        notices.CANCEL_RECORDED,
    )
    assert all(notice.capped for notice in replies_to_a_sender)
    assert not any(notice.capped for notice in about_an_application)
    assert {n.audience for n in about_an_application} == {Audience.APPLICANT, Audience.STAFF}


def test_subjects_are_filled_from_the_notice_values() -> None:
    values = {"receipt_no": "260001A", "count": 3, "min_business_days": 1}
    assert notices.RECEIPT_COMPLETE.subject_for(values) == "利用申込受付完了のお知らせ（260001A）"
    assert notices.REVIEW_REMINDER.subject_for(values) == (
        "審査待ちの申込が3件あります（受付から1営業日超）"
    )
    for notice in CATALOGUE:
        assert "{" not in notice.subject_for(values)


def test_dedupe_keys_keep_their_stored_formats() -> None:
    application = notices.application_cause("260001A")
    key = notices.dedupe_key
    assert key(application, notices.RECEIPT_COMPLETE, "a@x") == (
        "application:260001A:receipt_complete:a@x"
    )
    assert key(application, notices.REVIEW_REQUEST, "s@x", version=3) == (
        "application:260001A:review_request:v3:s@x"
    )
    assert key(application, notices.APPROVED_STAFF, "s@x", version=2) == (
        "application:260001A:approved_staff:v2:s@x"
    )
    assert key(application, notices.WITHDRAWN_STAFF, "s@x") == "application:260001A:withdrawn:s@x"
    assert key(application, notices.CANCELLED_STAFF, "s@x") == "application:260001A:cancelled:s@x"
    assert key(notices.inbound_cause(7), notices.HELP, "y@x") == "inbound:7:help:y@x"
    assert key(notices.inbound_cause(7), notices.FOLLOW_UP_STAFF, "s@x") == (
        "inbound:7:follow_up_staff:s@x"
    )
    assert key(notices.day_cause(date(2026, 12, 1)), notices.REVIEW_REMINDER, "s@x") == (
        "reminder:2026-12-01:s@x"
    )


def test_a_dedupe_key_built_in_sql_is_the_one_built_in_python() -> None:
    receipt_no, recipient = literal("260001A", String), literal("a@x", String)
    in_sql = notices.dedupe_key(notices.application_cause(receipt_no), notices.APPLIED, recipient)
    with create_engine("sqlite://").connect() as connection:
        assert connection.execute(select(in_sql)).scalar_one() == notices.dedupe_key(
            notices.application_cause("260001A"), notices.APPLIED, "a@x"
        )
