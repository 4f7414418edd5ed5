"""The console's queue counts over real HTTP on both databases: a queue page lists at most
``queues.LIMIT`` rows (lowered here to 3), but its heading and the home page count every item,
and the page says when it shows only the first of them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, update
from sqlmodel import col, select

from db.engine import session_scope
from db.models import InboundMessage, OutboundMessage
from mailbot.console import queues
from tests.integration.conftest import HarnessFactory
from tests.integration.test_web import START
from tests.support.console import Console, office_applications, running_console
from tests.support.harness import STAFF
from tests.support.loop import LoopThread
from tests.support.requests import form, mail
from tests.support.review import answer
from tests.support.web import recipient

SHOWN = 3  # queues.LIMIT in these tests
EACH = SHOWN + 1  # items in each capped queue: one more than a page lists


@pytest.fixture
def console(
    harness_factory: HarnessFactory, loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Console]:
    monkeypatch.setattr(queues, "LIMIT", SHOWN)
    with running_console(harness_factory, loop_thread) as running:
        yield running


def shown_note(total: int) -> str:
    return (
        f"{total}件のうち最初の{SHOWN}件を表示しています。\nShowing the first {SHOWN} of {total}."
    )


def test_counts_are_true_totals_while_each_page_lists_at_most_limit(
    console: Console, tmp_path: Path
) -> None:
    h = console.h
    office_applications(h, tmp_path, 2 * EACH, START)
    h.deliver()
    reviews = [m for m in h.new_mail() if "審査依頼" in str(m["Subject"]) and recipient(m) == STAFF]
    assert len(reviews) == 2 * EACH
    for review in reviews[:EACH]:
        answer(h, review, STAFF, "承認")  # EACH approved, EACH still under review
    for n in range(EACH):  # EACH messages the worker could not process
        h.send(mail(form("1ANACA0A", start=START), subject=f"申込 {n}"))
    with session_scope(h.engine) as session:
        session.execute(
            update(InboundMessage)
            .where(col(InboundMessage.status) == "pending")
            .values(status="quarantined", error="Traceback …\nValueError: boom")
        )
        session.execute(update(OutboundMessage).values(status="failed", last_error="550 no"))
        failed = session.exec(select(func.count()).select_from(OutboundMessage)).one()
    assert failed > SHOWN
    # Friday 12/11: START (12/15) is 2 business days away, so every review is at risk.
    h.now = datetime(2026, 12, 11, 1, 0, tzinfo=UTC)
    b = console.logged_in()

    home = b.get("/staff/").text
    for total, title in [
        (EACH, "審査待ち"),
        (EACH, "承認済み（適用待ち）"),
        (EACH, "隔離されたメール"),
        (failed, "送信に失敗した通知"),
    ]:
        assert f"{total}\n{title}" in home, f"{total} {title} not on the home page:\n{home}"
    assert f"うち期限間近 {EACH}件" in home

    for queue, heading, total, row in [
        ("review", "Under review", EACH, r'name="item" value="[^"]+" id='),
        ("approved", "Approved, until applied", EACH, r'<td><a href="[^"]*/staff/a/'),
        ("quarantine", "Quarantined messages", EACH, r'name="item" value="\d+:0"'),
        ("failed", "Notices that failed", failed, r'name="item" value="\d+:0"'),
    ]:
        page = b.get(f"/staff/queues/{queue}")
        assert f"{heading}\n（{total}件）\n{shown_note(total)}" in page.text, queue
        assert len(re.findall(row, page.html)) == SHOWN, queue


def test_a_queue_within_the_limit_has_no_note(console: Console, tmp_path: Path) -> None:
    office_applications(console.h, tmp_path, SHOWN, START)
    page = console.logged_in().get("/staff/queues/review")
    assert f"Under review\n（{SHOWN}件）" in page.text
    assert "最初の" not in page.text and "Showing the first" not in page.text
    assert len(re.findall(r'name="item" value="[^"]+" id=', page.html)) == SHOWN
