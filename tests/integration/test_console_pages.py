"""The console's pages over real HTTP on both databases: queues, search and its CSV, an
application's page and timeline, decisions (the same code as by reply: notices, audit, the
version check, four-eyes across web and mail), cancelling, quarantine, failed notices, bulk work
with a preview and per-item results, the health panel."""

from __future__ import annotations

import csv
import io
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from db.engine import session_scope
from db.models import (
    InboundMessage,
    OutboundMessage,
)
from mailbot.applications import find_application
from mailbot.calendar import BusinessCalendar
from mailbot.console import actions
from mailbot.review import Action, Decision, DecisionError, ReviewContext, decide
from mailbot.staff import find_staff
from tests.integration.conftest import HarnessFactory
from tests.integration.test_web import CONFIRMATION, START, recipient, submit
from tests.support.console import Browser, Console, Page, office_applications, running_console
from tests.support.harness import STAFF, Harness, body_text
from tests.support.loop import LoopThread
from tests.support.requests import SATO, YAMADA, form, mail
from tests.support.review import STAFF2, answer, with_second_reviewer


@pytest.fixture
def console(harness_factory: HarnessFactory, loop_thread: LoopThread) -> Iterator[Console]:
    with running_console(harness_factory, loop_thread) as running:
        yield running


@pytest.fixture
def four_eyes(harness_factory: HarnessFactory, loop_thread: LoopThread) -> Iterator[Console]:
    """The console where an approval takes two staff members, with a second one (STAFF2)."""
    with running_console(harness_factory, loop_thread, approvals_required=2) as running:
        with_second_reviewer(running.h)
        yield running


def review_request(sent: list[EmailMessage], to: str = STAFF) -> EmailMessage:
    return next(m for m in sent if "審査依頼" in str(m["Subject"]) and recipient(m) == to)


def decision_form(b: Browser, receipt_no: str, **fields: str) -> tuple[Page, dict[str, str]]:
    """The application's page and the fields its decision forms post (CSRF token, version)."""
    page = b.get(f"/staff/a/{receipt_no}")
    data = {"csrf": page.csrf(), "version": page.field("version"), **fields}
    return page, data


# --- queues ------------------------------------------------------------------------------------


def test_home_counts_the_queues_and_the_review_queue_marks_those_at_risk(console: Console) -> None:
    h = console.h
    submit(h, "1ANACA0A")  # 260001A, proposed 12/15
    h.now += timedelta(hours=1)
    h.round_trip(mail(form("1ANACA0B", start="2026年12月8日")))  # 260002A, proposed 12/8
    b = console.logged_in()
    home = b.get("/staff/")
    assert "2\n審査待ち" in home.text and "うち期限間近" not in home.text
    # On Friday 12/4 the 12/8 start date is 2 business days away (12/7, 12/8): at risk.
    h.now = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
    b = console.logged_in()  # (the session before has been idle for days)
    home = b.get("/staff/")
    assert "うち期限間近 1件" in home.text
    queue = b.get("/staff/queues/review")
    text = queue.text
    assert text.index("260001A") < text.index("260002A")  # oldest first
    assert re.search(
        r"260002A\n.*\nTYO01\n山田 太郎\n1ANACA0B\n2026年12月8日（火）\n2営業日\n期限間近", text
    )
    assert re.search(r"260001A\n(?:.*\n){4}2026年12月15日（火）\n7営業日\n-", text)
    for name in ("approved", "shared", "quarantine", "failed"):
        assert b.get(f"/staff/queues/{name}").status == 200
    assert b.get("/staff/queues/nonsense").status == 404


def test_approved_and_shared_code_queues(console: Console) -> None:
    h = console.h
    # 1ANAC is shared by TYO01 and OSK01 (1ANACA0C): TYO01 giving up all its 1ANAC IDs waits
    # for OSK01.
    sent = submit(h, "1ANACA0A", "1ANACA0B", "1ANAC001")
    answer(h, review_request(sent), STAFF, "承認")
    b = console.logged_in()
    assert "1ANAC\nOSK01\n260001A" in b.get("/staff/queues/shared").text
    approved = b.get("/staff/queues/approved").text
    assert "2026年12月15日（火）\n260001A\nTYO01\n1ANACA0A, 1ANACA0B, 1ANAC001" in approved


# --- an application, decisions ------------------------------------------------------------------


def test_approve_on_the_web_sends_the_notices_and_shows_one_timeline(console: Console) -> None:
    h = console.h
    submit(h)
    b = console.logged_in()
    page, data = decision_form(b, "260001A")
    assert "申込のメール" in page.text and "■事業所コード：TYO01" in page.text
    done = b.post("/staff/a/260001A/approve", data)
    assert done.status == 200 and "承認しました" in done.text
    h.deliver()
    notices = [m for m in h.new_mail() if CONFIRMATION in str(m["Subject"])]
    assert sorted(recipient(m) for m in notices) == sorted([YAMADA, SATO])
    (finished,) = h.audit_events("review_finished")
    assert finished.actor == STAFF and finished.detail["via"] == "web"
    timeline = done.text[done.text.index("経過") :]
    assert re.search(r"受付\nreceived\n" + re.escape(YAMADA), timeline)
    assert "承認\napproved\nstaff@mailbot.localhost（管理画面）" in timeline
    assert "通知：【NSS】利用申込確認完了のお知らせ" in timeline and "送信済み / sent" in timeline
    # An approved application offers the cancellation, no longer the decision.
    assert "承認の取消" in done.text and "承認する" not in done.text


def test_a_decision_by_reply_between_loading_and_posting_is_reported_not_doubled(
    console: Console,
) -> None:
    h = console.h
    sent = submit(h)
    with_second_reviewer(h)
    b = console.logged_in(STAFF2)
    _, data = decision_form(b, "260001A")  # the page is loaded …
    review = review_request(sent)
    answer(h, review, STAFF, "却下 利用者IDが誤っています")  # … a reply decides …
    outbox_before = len(h.outbound())
    late = b.post("/staff/a/260001A/approve", data)  # … and the form is posted
    assert late.status == 409
    assert re.search(r"260001A は .* に staff@mailbot\.localhost が却下済みです", late.text)
    assert "already decided by staff@mailbot.localhost at" in late.text
    assert [a.status for a in h.applications()] == ["rejected"]
    assert len(h.audit_events("review_finished")) == 1 and len(h.outbound()) == outbox_before


def test_a_changed_application_is_not_decided_from_an_old_page(four_eyes: Console) -> None:
    c = four_eyes
    h = c.h
    sent = submit(h)
    b = c.logged_in(STAFF2)
    _, data = decision_form(b, "260001A")
    review = review_request(sent)
    # STAFF approves with another start date: the application's version goes up.
    answer(h, review, STAFF, "承認 利用開始日：2026年12月22日")
    old = b.post("/staff/a/260001A/approve", data)
    assert old.status == 409 and "この画面を開いた後に" in old.text
    assert [a.status for a in h.applications()] == ["under_review"]
    _, data = decision_form(b, "260001A")
    assert "staff@mailbot.localhost（1/2）" in b.get("/staff/a/260001A").text
    done = b.post("/staff/a/260001A/approve", data)
    assert "承認しました" in done.text
    (application,) = h.applications()
    assert application.status == "approved" and str(application.start_date) == "2026-12-22"


def test_four_eyes_counts_web_and_mail_approvals_together_never_one_person_twice(
    four_eyes: Console,
) -> None:
    c = four_eyes
    h = c.h
    sent = submit(h)
    b = c.logged_in(STAFF)
    _, data = decision_form(b, "260001A")
    recorded = b.post("/staff/a/260001A/approve", data)
    assert "承認を記録しました" in recorded.text
    _, data = decision_form(b, "260001A")
    twice = b.post("/staff/a/260001A/approve", data)
    assert twice.status == 409 and "すでにあなたが承認しています" in twice.text
    # The same person by mail is refused too.
    review = review_request(sent, STAFF)
    told = answer(h, review, STAFF, "承認")
    assert [a.status for a in h.applications()] == ["under_review"]
    assert any("回答を反映できませんでした" in str(m["Subject"]) for m in told)
    # The second person, by mail, completes it.
    review2 = review_request(sent, STAFF2)
    answer(h, review2, STAFF2, "承認")
    assert [a.status for a in h.applications()] == ["approved"]
    vias = [(e.actor, e.detail["via"]) for e in h.audit_events("approval")]
    assert vias == [(STAFF, "web"), (STAFF2, "mail")]


def test_reject_needs_a_reason_and_tells_the_applicant(console: Console) -> None:
    h = console.h
    submit(h)
    b = console.logged_in()
    _, data = decision_form(b, "260001A")
    empty = b.post("/staff/a/260001A/reject", {**data, "reason": "  "})
    assert empty.status == 409 and "却下の理由" in empty.text
    done = b.post("/staff/a/260001A/reject", {**data, "reason": "利用者IDが誤っています"})
    assert "却下しました" in done.text
    h.deliver()
    (notice,) = [
        m for m in h.new_mail() if "審査結果" in str(m["Subject"]) and recipient(m) == YAMADA
    ]
    assert "利用者IDが誤っています" in body_text(notice)


def test_cancel_an_approval_on_the_web(console: Console) -> None:
    h = console.h
    submit(h)
    b = console.logged_in()
    _, data = decision_form(b, "260001A")
    b.post("/staff/a/260001A/approve", data)
    _, data = decision_form(b, "260001A")
    done = b.post("/staff/a/260001A/cancel", {**data, "reason": "申込者から取消の依頼がありました"})
    assert "承認を取り消しました" in done.text
    (cancelled,) = h.audit_events("cancelled")
    assert cancelled.detail["via"] == "web" and cancelled.actor == STAFF
    h.deliver()
    assert any("取消" in str(m["Subject"]) and recipient(m) == YAMADA for m in h.new_mail())


def test_start_dates_on_the_web_are_checked_as_by_the_cli(console: Console) -> None:
    h = console.h
    submit(h)
    b = console.logged_in()
    _, data = decision_form(b, "260001A", start_date="2026-12-19")  # a Saturday
    refused = b.post("/staff/a/260001A/approve", data)
    assert refused.status == 409 and "営業日ではありません" in refused.text
    _, data = decision_form(b, "260001A", start_date="2026-12-18")  # no registration date
    done = b.post("/staff/a/260001A/approve", data)
    assert "承認しました" in done.text and "システム登録日ではありません" in done.text
    assert str(h.applications()[0].start_date) == "2026-12-18"


# --- search ------------------------------------------------------------------------------------


def test_search_is_in_the_url_and_the_csv_holds_exactly_what_is_shown(console: Console) -> None:
    h = console.h
    submit(h, "1ANACA0A")
    h.round_trip(
        mail(
            form(
                "1ANACA0C",
                office_code="OSK01",
                applicant="加藤 一郎",
                start=START,
                manager_email="ito@example.co.jp",
            ),
            sender="kato@example.co.jp",
        )
    )
    b = console.logged_in()
    for q, expected in (
        ("260001A", ["260001A"]),
        ("1anaca0c", ["260002A"]),
        ("1ANAC", ["260002A", "260001A"]),
        ("OSK01", ["260002A"]),
        ("yamada@EXAMPLE.co.jp", ["260001A"]),
        ("山田", ["260001A"]),
    ):
        page = b.get(f"/staff/search?q={quote(q)}")
        assert re.findall(r"\b26000\dA\b", page.text.split("結果", 1)[1]) == expected, q
    page = b.get("/staff/search?q=1ANAC&status=under_review&from=2026-11-27&to=2026-11-27")
    shown = re.findall(r"\b26000\dA\b", page.text.split("結果", 1)[1])
    assert shown == ["260002A", "260001A"]
    href = re.search(r'href="([^"]*search\.csv[^"]*)"', page.html)
    assert href
    exported = b.get(href.group(1).replace("&amp;", "&"))
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.body.decode("utf-8-sig"))))
    assert rows[0][:3] == ["receipt_no", "status", "status_ja"]
    assert [r[0] for r in rows[1:]] == shown
    assert (
        b.get("/staff/search?q=1ANAC&status=rejected").text.count("該当する申込はありません") == 1
    )


# --- quarantine, failed notices, bulk ---------------------------------------------------------------


def quarantine(h: Harness, raw: bytes, error: str = "Traceback …\nValueError: boom") -> int:
    h.send(raw)
    with session_scope(h.engine) as session:
        newest = session.exec(
            select(InboundMessage).order_by(col(InboundMessage.id).desc())
        ).first()
        assert newest is not None and newest.id is not None
        newest.status, newest.error = "quarantined", error
        session.add(newest)
        return newest.id


def test_quarantined_messages_are_shown_reprocessed_and_discarded(console: Console) -> None:
    h = console.h
    attached = mail(form("1ANACA0A", start=START), subject="申込")
    first = quarantine(h, attached)
    second = quarantine(h, mail(form("1ANACA0B", start=START)))
    b = console.logged_in()
    queue = b.get("/staff/queues/quarantine")
    assert f"#{first}" in queue.text and "ValueError: boom" in queue.text
    held = b.get(f"/staff/messages/{first}")
    assert (
        "エラー" in held.text and "Traceback" in held.text and "■事業所コード：TYO01" in held.text
    )
    source = b.get(f"/staff/messages/{first}/source.eml")
    assert source.headers["content-type"] == "application/octet-stream" and source.body.startswith(
        b"Received:"
    )
    # Discard needs a reason; then it is processed-and-kept, never processed again.
    token = held.csrf()
    assert b.post(f"/staff/messages/{first}/discard", {"csrf": token, "reason": ""}).status == 409
    gone = b.post(
        f"/staff/messages/{first}/discard", {"csrf": token, "reason": "重複して届いたため"}
    )
    assert "破棄しました" in gone.text
    again = b.post(f"/staff/messages/{second}/reprocess", {"csrf": token})
    assert "再処理の待ち行列に戻しました" in again.text
    statuses = {m.id: (m.status, m.kind) for m in h.inbound()}
    assert statuses[first] == ("done", "discarded") and statuses[second][0] == "pending"
    h.process()
    assert [a.receipt_no for a in h.applications()] == ["260001A"]  # only the reprocessed one
    audited = [
        (e.event, e.inbound_id, e.detail.get("reason"))
        for e in h.audit_events("inbound_discarded", "inbound_reprocessed")
    ]
    assert audited == [
        ("inbound_discarded", first, "重複して届いたため"),
        ("inbound_reprocessed", second, None),
    ]


def test_bulk_work_previews_then_reports_each_item(console: Console) -> None:
    h = console.h
    ids = [quarantine(h, mail(form(user_id, start=START))) for user_id in ("1ANACA0A", "1ANACA0B")]
    b = console.logged_in()
    queue = b.get("/staff/queues/quarantine")
    picked = [("item", f"{i}:0") for i in ids] + [("item", "99999:0")]
    preview = b.post(
        "/staff/bulk/preview", [("csrf", queue.csrf()), ("action", "reprocess"), *picked]
    )
    assert "まだ何も変更していません" in preview.text and "ありません / not found" in preview.text
    assert all(m.status == "quarantined" for m in h.inbound())
    tokens = re.findall(r'name="item" value="([^"]+)"', preview.html)
    results = b.post(
        "/staff/bulk/run",
        [
            ("csrf", preview.csrf()),
            ("action", "reprocess"),
            ("reason", ""),
            *[("item", t) for t in tokens],
        ],
    )
    assert "3件中 2件を処理しました" in results.text
    assert "no inbound message 99999" in results.text
    assert all(m.status == "pending" for m in h.inbound())


def test_failed_notices_are_retried_from_the_console(console: Console) -> None:
    h = console.h
    submit(h)
    with session_scope(h.engine) as session:
        session.execute(
            update(OutboundMessage).values(status="failed", last_error="550 no such user")
        )
    b = console.logged_in()
    queue = b.get("/staff/queues/failed")
    assert "550 no such user" in queue.text
    ids = re.findall(r'name="item" value="(\d+):0"', queue.html)
    assert len(ids) == 3  # two receipt notices, one review request
    preview = b.post(
        "/staff/bulk/preview",
        [("csrf", queue.csrf()), ("action", "retry"), *[("item", f"{i}:0") for i in ids]],
    )
    results = b.post(
        "/staff/bulk/run",
        [("csrf", preview.csrf()), ("action", "retry"), *[("item", f"{i}:0") for i in ids]],
    )
    assert "3件中 3件を処理しました" in results.text
    with session_scope(h.engine) as session:
        retried = session.exec(
            select(OutboundMessage).where(col(OutboundMessage.kind) != "console_login")
        )
        assert {o.status for o in retried} == {"pending"}
    assert len(h.audit_events("notice_retried")) == 3


def test_health_panel(console: Console) -> None:
    h = console.h
    submit(h)
    b = console.logged_in()
    page = b.get("/staff/health")
    assert page.status == 200
    (received,) = h.inbound()
    when = received.received_at.replace(tzinfo=UTC).astimezone(h.settings.zone)
    assert f"最後の受信 / Last message received\n{when:%Y-%m-%d %H:%M}" in page.text
    assert "database\n正常 ok" in page.text
    assert "次の適用 / Next apply\nなし / none" in page.text


# --- 200 in one action -------------------------------------------------------------------------

BULK = 200


def test_two_hundred_applications_approved_in_one_action(
    harness_factory: HarnessFactory, loop_thread: LoopThread, tmp_path: Path
) -> None:
    """Each gets its confirmation notices, its approval and review_finished events."""
    with running_console(harness_factory, loop_thread) as c:
        h = c.h
        office_applications(h, tmp_path, BULK, START, registered=BULK + 1)
        while h.deliver():
            pass
        h.new_mail()
        b = c.logged_in()
        queue = b.get("/staff/queues/review")
        picked = re.findall(r'name="item" value="([^"]+)" id=', queue.html)
        assert len(picked) == BULK
        preview = b.post(
            "/staff/bulk/preview",
            [("csrf", queue.csrf()), ("action", "approve"), *[("item", p) for p in picked]],
        )
        assert preview.text.count("OK") == BULK
        started = time.perf_counter()
        results = b.post(
            "/staff/bulk/run",
            [("csrf", preview.csrf()), ("action", "approve"), *[("item", p) for p in picked]],
        )
        elapsed = time.perf_counter() - started
        assert f"{BULK}件中 {BULK}件を処理しました" in results.text
        assert {a.status for a in h.applications()} == {"approved"}
        assert (
            len(h.audit_events("review_finished")) == BULK
            and len(h.audit_events("approval")) == BULK
        )
        with session_scope(h.engine) as session:
            kinds = [
                o.kind
                for o in session.exec(
                    select(OutboundMessage).where(col(OutboundMessage.created_at) >= h.now)
                )
            ]
        assert kinds.count("confirmation_complete") == 2 * BULK
        print(f"200 approvals in one action: {elapsed:.2f} s")
        assert elapsed < 10


def test_a_web_decision_and_a_reply_racing_decide_once(harness: Harness) -> None:
    """The reply's transaction reads the application under review while the web's, holding
    its row, approves; the reply then finds it decided (mailbot.review.decide locks the row)."""
    h = harness
    submit(h)
    outcome: list[str] = []
    read = threading.Event()

    def reply_decides() -> None:
        with session_scope(h.engine) as session:
            application = find_application(session, "260001A")
            read.set()
            staff = find_staff(session, STAFF)
            try:
                decide(
                    session,
                    ReviewContext(h.settings, BusinessCalendar(), h.now),
                    application,
                    staff,
                    Decision(Action.REJECT, reason="利用者IDが誤っています"),
                    via="mail",
                )
                outcome.append("decided")
            except DecisionError as refused:
                outcome.append(refused.message_en)

    with session_scope(h.engine) as session:
        ctx = ReviewContext(h.settings, BusinessCalendar(), h.now)
        actions.approve(session, actions.Asked(ctx, by=STAFF, receipt_no="260001A", version=1))
        racer = threading.Thread(target=reply_decides)
        racer.start()
        read.wait(timeout=2)  # PostgreSQL: it has read; SQLite: it waits for the writer lock
        time.sleep(0.3)
    racer.join(timeout=30)
    assert len(outcome) == 1 and outcome[0].startswith("260001A was already decided by")
    assert [a.status for a in h.applications()] == ["approved"]
    assert len(h.audit_events("review_finished")) == 1
