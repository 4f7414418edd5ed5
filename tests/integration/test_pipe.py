"""The MDA pipe: exit codes an MTA understands (0 stored, 75 retry, 65 bounce), bytes exact."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, col, func, select

from db.models import INBOUND_PENDING, InboundMessage
from mailbot.config import load_settings
from mailbot.gateway.pipe import EX_DATAERR, EX_OK, EX_TEMPFAIL, ingest_stream, strip_from_line

OURS = "apply@mailbot.localhost"
# Postfix pipe(8) hands over LF line endings; stored as delivered, not "fixed".
RAW = (
    b"From: applicant@example.co.jp\n"
    b"To: apply@mailbot.localhost\n"
    b"Subject: \x1b$B?=9~\x1b(B\n"
    b"Message-ID: <pipe@example.co.jp>\n"
    b"\n"
    b"\x1b$B$3$s$K$A$O\x1b(B\n\xe5\x88\xa9\xe7\x94\xa8\xe8\x80\x85ID\r\n\xff\n"
)


def rows(engine: Engine) -> list[InboundMessage]:
    with Session(engine) as session:
        return list(session.exec(select(InboundMessage).order_by(col(InboundMessage.id))))


def count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(InboundMessage)).one()


def test_stored_message_exits_0_with_exact_bytes_and_envelope(engine: Engine) -> None:
    code = ingest_stream(
        engine, RAW, envelope_from="applicant@example.co.jp", envelope_to=[OURS], max_bytes=4096
    )
    assert code == EX_OK == 0
    (row,) = rows(engine)
    assert row.raw == RAW
    assert (row.channel, row.status) == ("pipe", INBOUND_PENDING)
    assert (row.envelope_from, row.envelope_to) == ("applicant@example.co.jp", [OURS])
    assert row.message_id == "<pipe@example.co.jp>"


def test_stream_input_is_read_whole(engine: Engine) -> None:
    code = ingest_stream(
        engine, io.BytesIO(RAW), envelope_from="a@x.jp", envelope_to=[OURS], max_bytes=len(RAW)
    )
    assert code == EX_OK
    assert rows(engine)[0].raw == RAW


def test_redelivery_exits_0_and_stores_once(engine: Engine) -> None:
    for _ in range(2):
        assert ingest_stream(engine, RAW, envelope_from="a@x.jp", envelope_to=[OURS]) == EX_OK
    assert count(engine) == 1


@pytest.mark.parametrize("sender", ["", "<>"])
def test_null_sender_is_stored_as_empty(engine: Engine, sender: str) -> None:
    assert ingest_stream(engine, RAW, envelope_from=sender, envelope_to=[OURS]) == EX_OK
    assert rows(engine)[0].envelope_from == ""


def test_leading_mbox_from_line_is_dropped_so_redeliveries_match(engine: Engine) -> None:
    first = b"From applicant@example.co.jp  Sat Nov 28 10:00:00 2026\n" + RAW
    again = b"From applicant@example.co.jp  Sat Nov 28 10:05:00 2026\n" + RAW
    assert ingest_stream(engine, first, envelope_from="a@x.jp", envelope_to=[OURS]) == EX_OK
    assert ingest_stream(engine, again, envelope_from="a@x.jp", envelope_to=[OURS]) == EX_OK
    (row,) = rows(engine)
    assert row.raw == RAW


@pytest.mark.parametrize("header", [b"From: a@x.jp\n", b"From : a@x.jp\n", b"From:\ta@x.jp\n"])
def test_a_from_header_is_not_an_mbox_line(header: bytes) -> None:
    assert strip_from_line(header + b"\nbody\n") == header + b"\nbody\n"


@pytest.mark.parametrize("data", [b"", b"\n", b"\r\n \t\r\n", b"From MAILER-DAEMON now\n"])
def test_empty_input_exits_65_and_stores_nothing(engine: Engine, data: bytes) -> None:
    assert ingest_stream(engine, data, envelope_from="", envelope_to=[OURS]) == EX_DATAERR == 65
    assert count(engine) == 0


def test_oversize_bytes_exit_65_and_store_nothing(engine: Engine) -> None:
    code = ingest_stream(engine, RAW, envelope_from="", envelope_to=[OURS], max_bytes=len(RAW) - 1)
    assert code == EX_DATAERR
    assert count(engine) == 0


def test_oversize_stream_is_refused_and_drained(engine: Engine) -> None:
    stream = io.BytesIO(RAW + b"x" * 1_000_000)
    code = ingest_stream(engine, stream, envelope_from="", envelope_to=[OURS], max_bytes=1024)
    assert code == EX_DATAERR
    assert stream.read() == b""  # the MTA's write end never sees a broken pipe
    assert count(engine) == 0


def test_limit_defaults_to_the_setting(engine: Engine, tmp_path: Path, database_url: str) -> None:
    settings = load_settings(home=tmp_path, database_url=database_url, max_message_bytes=1024)
    big = RAW + b"x" * 1024 + b"\n"
    assert ingest_stream(engine, big, envelope_from="", envelope_to=[], settings=settings) == 65
    assert ingest_stream(engine, RAW, envelope_from="", envelope_to=[], settings=settings) == 0
    assert count(engine) == 1


def test_database_failure_exits_75_and_a_retry_succeeds(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE inbound_message RENAME TO inbound_message_away"))
    code = ingest_stream(engine, RAW, envelope_from="a@x.jp", envelope_to=[OURS])
    assert code == EX_TEMPFAIL == 75
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE inbound_message_away RENAME TO inbound_message"))
    assert count(engine) == 0
    assert ingest_stream(engine, RAW, envelope_from="a@x.jp", envelope_to=[OURS]) == EX_OK
    assert rows(engine)[0].raw == RAW
