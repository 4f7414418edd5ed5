"""The worker's claim is bounded in bytes as well as in messages (both databases): every claimed
message's bytes are in memory until its batch commits, so ten 10 MB messages must not be
claimed together, while small ones still share a batch."""

from __future__ import annotations

from sqlalchemy import Engine

from db.engine import session_scope
from mailbot.gateway.store import store_message
from mailbot.inbound_claim import CLAIM_MAX_BYTES, claim_pending_inbound


def store(engine: Engine, name: str, size: int) -> int:
    head = f"From: a@example.net\r\nSubject: {name}\r\n\r\n".encode()
    raw = head + b"x" * (size - len(head))
    return store_message(
        engine, raw, channel="smtp", envelope_from="a@example.net", envelope_to=["apply@x"]
    ).inbound_id


def claimed(engine: Engine, limit: int = 10, max_bytes: int = CLAIM_MAX_BYTES) -> list[int]:
    with session_scope(engine) as session:
        return [m.id or 0 for m in claim_pending_inbound(session, limit, max_bytes)]


def test_small_messages_are_claimed_up_to_the_count(engine: Engine) -> None:
    ids = [store(engine, f"small-{n}", 4096) for n in range(12)]
    assert claimed(engine) == ids[:10]


def test_large_messages_are_claimed_within_the_byte_budget(engine: Engine) -> None:
    ids = [store(engine, f"large-{n}", 40_000) for n in range(5)]
    assert claimed(engine, max_bytes=100_000) == ids[:2]  # a third would pass 100,000 bytes


def test_a_message_larger_than_the_budget_is_claimed_alone(engine: Engine) -> None:
    big = store(engine, "big", 150_000)
    store(engine, "after", 1000)
    assert claimed(engine, max_bytes=100_000) == [big]


def test_the_default_budget_takes_one_ten_megabyte_message_at_a_time(engine: Engine) -> None:
    ids = [store(engine, f"ten-mb-{n}", 9_500_000) for n in range(3)]
    assert claimed(engine) == ids[:1]
