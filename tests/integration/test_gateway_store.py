"""store_message on SQLite and PostgreSQL: committed on return, byte-exact, exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, col, func, select

from db.engine import make_engine
from db.models import INBOUND_PENDING, InboundMessage
from mailbot.errors import StoreError
from mailbot.gateway.store import extract_message_id, header_block, store_message

RAW = (
    b"From: applicant@example.co.jp\r\n"
    b"To: apply@mailbot.localhost\r\n"
    b"Subject: =?ISO-2022-JP?B?GyRCJVEbKEI=?=\r\n"
    b"Message-ID: <abc.123@example.co.jp>\r\n"
    b"\r\n"
    b"\x1b$B$3$s$K$A$O\x1b(B\r\n"
    b"\xe3\x81\x82\xff\x00 bytes\r\n"
)


def _rows(engine: Engine) -> list[InboundMessage]:
    with Session(engine) as session:
        return list(session.exec(select(InboundMessage).order_by(col(InboundMessage.id))))


def _count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(InboundMessage)).one()


@contextmanager
def _table_renamed(engine: Engine) -> Iterator[None]:
    """The inbound table out of the way: a real storage failure, undone afterwards."""
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE inbound_message RENAME TO inbound_message_away"))
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE inbound_message_away RENAME TO inbound_message"))


def test_stores_a_pending_row_with_exact_bytes_and_envelope(engine: Engine) -> None:
    result = store_message(
        engine,
        RAW,
        channel="smtp",
        envelope_from="applicant@example.co.jp",
        envelope_to=["apply@mailbot.localhost", "apply+r260001a@mailbot.localhost"],
    )
    assert not result.duplicate
    (row,) = _rows(engine)
    assert row.id == result.inbound_id
    assert row.raw == RAW
    assert row.size == len(RAW)
    assert row.status == INBOUND_PENDING
    assert row.channel == "smtp"
    assert row.envelope_from == "applicant@example.co.jp"
    assert row.envelope_to == ["apply@mailbot.localhost", "apply+r260001a@mailbot.localhost"]
    assert row.message_id == "<abc.123@example.co.jp>"
    assert len(row.sha256) == 64
    assert row.received_at.tzinfo is not None


def test_row_is_committed_before_return(engine: Engine, database_url: str) -> None:
    result = store_message(engine, RAW, channel="pipe", envelope_from=None, envelope_to=[])
    other = make_engine(database_url)  # another pool: sees only committed data
    try:
        with Session(other) as session:
            stored = session.get_one(InboundMessage, result.inbound_id).raw
    finally:
        other.dispose()
    assert stored == RAW


def test_same_bytes_twice_give_one_row_and_the_same_id(engine: Engine) -> None:
    first = store_message(engine, RAW, channel="smtp", envelope_from="a@x.jp", envelope_to=["t"])
    second = store_message(engine, RAW, channel="imap", envelope_from=None, envelope_to=[])
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.inbound_id == first.inbound_id
    assert _count(engine) == 1
    (row,) = _rows(engine)
    assert row.channel == "smtp"  # the first delivery's envelope is kept


def test_one_differing_byte_is_a_different_message(engine: Engine) -> None:
    store_message(engine, RAW, channel="smtp", envelope_from="", envelope_to=[])
    store_message(engine, RAW + b"\r\n", channel="smtp", envelope_from="", envelope_to=[])
    assert _count(engine) == 2


def test_null_sender_is_stored_as_empty_string(engine: Engine) -> None:
    store_message(engine, RAW, channel="smtp", envelope_from="<>", envelope_to=["t"])
    (row,) = _rows(engine)
    assert row.envelope_from == ""


def test_concurrent_stores_of_the_same_bytes_write_one_row(engine: Engine) -> None:
    results = []
    barrier = threading.Barrier(8)

    def deliver() -> None:
        barrier.wait()
        results.append(store_message(engine, RAW, channel="smtp", envelope_from="", envelope_to=[]))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert len({r.inbound_id for r in results}) == 1
    assert sorted(r.duplicate for r in results) == [False] + [True] * 7
    assert _count(engine) == 1


def test_database_failure_raises_store_error_and_stores_nothing(engine: Engine) -> None:
    with _table_renamed(engine), pytest.raises(StoreError):
        store_message(engine, RAW, channel="smtp", envelope_from="", envelope_to=[])
    assert _count(engine) == 0
    # And the engine is usable again once the database is back.
    assert not store_message(
        engine, RAW, channel="smtp", envelope_from="", envelope_to=[]
    ).duplicate


def test_overlong_message_id_and_sender_are_clipped_not_refused(engine: Engine) -> None:
    raw = b"Message-ID: <" + b"x" * 2000 + b"@example.jp>\r\n\r\nbody\r\n"
    store_message(engine, raw, channel="smtp", envelope_from="a" * 400 + "@x.jp", envelope_to=[])
    (row,) = _rows(engine)
    assert row.raw == raw
    assert row.message_id is not None and len(row.message_id) == 998
    assert row.envelope_from is not None and len(row.envelope_from) == 320


# Message-ID extraction is pure: no database needed -------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"Message-ID: <a@b>\r\n\r\nbody", "<a@b>"),
        (b"message-id:<a@b>\n\nbody", "<a@b>"),
        (b"MESSAGE-ID : <a@b>\r\n\r\n", "<a@b>"),
        (b"Subject: x\r\nMessage-Id:\r\n  <folded@b>\r\nTo: y\r\n\r\n", "<folded@b>"),
        (b"Message-ID: <a@b> (comment)\r\n\r\n", "<a@b>"),
        (b"Message-ID: no-angle@b\r\n\r\n", "no-angle@b"),
        (b"Message-ID: <\xe3\x81\x82@b>\r\n\r\n", "<\u3042@b>"),
        (b"Message-ID: <\xff@b>\r\n\r\n", "<\ufffd@b>"),
        (b"Subject: x\r\n\r\nMessage-ID: <in-body@b>\r\n", None),
        (b"X-Message-ID: <other@b>\r\n\r\n", None),
        (b"Message-ID:   \r\n\r\n", None),
        (b"\r\nMessage-ID: <after-blank@b>\r\n", None),
        (b"", None),
    ],
)
def test_extract_message_id(raw: bytes, expected: str | None) -> None:
    assert extract_message_id(raw) == expected


def test_header_block_stops_at_the_first_blank_line() -> None:
    assert header_block(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore") == b"A: 1\r\nB: 2"
    assert header_block(b"A: 1\nB: 2\n\nbody") == b"A: 1\nB: 2"
    assert header_block(b"A: 1\r\n") == b"A: 1\r\n"


def test_group_commit_stores_a_batch_once_each(engine: Engine) -> None:
    """One transaction for many messages; a message twice in the batch, or already stored,
    is one row answered as a duplicate."""
    from mailbot.gateway.store import Incoming, store_messages

    first = Incoming(b"Message-ID: <a@x>\r\n\r\nA\r\n", "smtp", "a@x", ["apply@mailbot.localhost"])
    second = Incoming(b"Message-ID: <b@x>\r\n\r\nB\r\n", "smtp", "b@x", ["apply@mailbot.localhost"])
    results = store_messages(engine, [first, second, first])
    assert [r.duplicate for r in results] == [False, False, True]
    assert results[0].inbound_id == results[2].inbound_id != results[1].inbound_id
    again = store_messages(engine, [second])
    assert again[0].inbound_id == results[1].inbound_id and again[0].duplicate
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(InboundMessage)).one() == 2
