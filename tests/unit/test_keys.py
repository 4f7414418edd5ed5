"""The keyring's pure parts: which keys verify when, what is shown of a key, and tokens signed
and checked across several keys (the reply-address format unchanged)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

from mailbot.keys import Key, KeyInfo, Keyring
from mailbot.tokens import (
    Purpose,
    TokenRefusal,
    link_refusal,
    link_token,
    reply_token_text,
    signed_purpose,
)

NOW = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
OLD = Key(1, b"o" * 64, verifies_until=NOW + timedelta(days=30))
DEAD = Key(2, b"d" * 64, verifies_until=NOW)
CURRENT = Key(3, b"c" * 64)
RING = Keyring(CURRENT, (DEAD, OLD))
LONG_AGO = NOW - timedelta(days=400)


def test_the_current_key_verifies_first_then_retired_keys_until_their_bound() -> None:
    assert RING.verifying(NOW - timedelta(seconds=1)) == (b"c" * 64, b"d" * 64, b"o" * 64)
    assert RING.verifying(NOW) == (b"c" * 64, b"o" * 64)  # the bound is the first moment out
    assert RING.verifying(NOW + timedelta(days=31)) == (b"c" * 64,)


def test_key_material_is_never_in_a_repr_or_in_what_operators_see() -> None:
    assert "ccc" not in repr(RING) and "ooo" not in repr(OLD)
    info = KeyInfo(1, LONG_AGO, NOW, imported=True, verifies_until=NOW + timedelta(days=30))
    shown = info.as_dict(NOW)
    assert shown == {
        "id": 1,
        "created_at": "2025-10-23T01:00:00+00:00",
        "age_days": 400.0,
        "state": "retired",
        "retired_at": "2026-11-27T01:00:00+00:00",
        "verifies_until": "2026-12-27T01:00:00+00:00",
        "verifies": True,
        "imported": True,
    }
    current = KeyInfo(2, NOW, None, imported=False, verifies_until=None)
    assert current.current and current.verifies(NOW + timedelta(days=10_000))
    assert current.as_dict(NOW)["state"] == "current"


def test_reply_tokens_keep_their_format_and_verify_with_any_live_key() -> None:
    nonce = secrets.token_bytes(10)
    by_old = reply_token_text(Keyring(OLD), Purpose.CANCEL, nonce)
    assert re.fullmatch(r"[a-z2-7]{32}", by_old)  # fits apply+t…@ in any case-folding mailer
    assert signed_purpose(RING, by_old, NOW) is Purpose.CANCEL
    assert signed_purpose(RING, by_old.upper(), NOW) is Purpose.CANCEL
    assert signed_purpose(RING, by_old, NOW + timedelta(days=30)) is None
    by_dead = reply_token_text(Keyring(DEAD), Purpose.REVIEW, nonce)
    assert signed_purpose(RING, by_dead, NOW) is None
    by_current = reply_token_text(RING, Purpose.REVIEW, nonce)
    assert signed_purpose(Keyring(CURRENT), by_current, NOW) is Purpose.REVIEW
    assert signed_purpose(Keyring(OLD), by_current, NOW) is None


def test_links_are_signed_with_the_current_key_and_open_with_any_live_key() -> None:
    expires = NOW + timedelta(days=90)
    by_ring = link_token(RING, "260001A", expires)
    assert link_refusal(Keyring(CURRENT), by_ring, receipt_no="260001A", now=NOW) is None
    assert link_refusal(Keyring(OLD), by_ring, receipt_no="260001A", now=NOW) is (
        TokenRefusal.BAD_SIGNATURE
    )
    by_old = link_token(Keyring(OLD), "260001A", expires)
    assert link_refusal(RING, by_old, receipt_no="260001A", now=NOW) is None
    after = NOW + timedelta(days=30)
    assert link_refusal(RING, by_old, receipt_no="260001A", now=after) is (
        TokenRefusal.BAD_SIGNATURE
    )
