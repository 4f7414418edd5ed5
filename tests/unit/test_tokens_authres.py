"""Link tokens and Authentication-Results: pure checks that authority depends on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailbot.authres import authenticated
from mailbot.keys import Key, Keyring
from mailbot.tokens import TokenRefusal, link_refusal, link_token

KEYS = Keyring(Key(1, b"k" * 32))
NOW = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)


def test_link_token_opens_its_receipt_until_it_expires() -> None:
    token = link_token(KEYS, "260001A", NOW + timedelta(days=90))
    assert link_refusal(KEYS, token, receipt_no="260001A", now=NOW) is None
    assert link_refusal(KEYS, token, receipt_no="260002A", now=NOW) is TokenRefusal.BAD_SIGNATURE
    later = NOW + timedelta(days=91)
    assert link_refusal(KEYS, token, receipt_no="260001A", now=later) is TokenRefusal.EXPIRED
    other = Keyring(Key(2, b"other" * 8))
    assert link_refusal(other, token, receipt_no="260001A", now=NOW) is TokenRefusal.BAD_SIGNATURE


def test_tampered_link_token_is_refused() -> None:
    token = link_token(KEYS, "260001A", NOW + timedelta(days=1))
    expiry, signature = token.split(".", 1)
    later = str(int(expiry) + 10**8)
    tampered = f"{later}.{signature}"
    assert link_refusal(KEYS, tampered, receipt_no="260001A", now=NOW) is TokenRefusal.BAD_SIGNATURE
    assert link_refusal(KEYS, "garbage", receipt_no="260001A", now=NOW) is TokenRefusal.MALFORMED
    assert link_refusal(KEYS, "", receipt_no="260001A", now=NOW) is TokenRefusal.MALFORMED


TRUSTED = "mx.example.jp"
RECEIVED = ("Received", "from a by mx.example.jp")


def test_trusted_dkim_or_dmarc_pass_above_received_counts() -> None:
    dkim = [("Authentication-Results", f"{TRUSTED}; dkim=pass header.d=corp.jp"), RECEIVED]
    dmarc = [
        ("Authentication-Results", f"{TRUSTED}; spf=pass; dmarc=pass (p=none) header.from=corp.jp"),
        RECEIVED,
    ]
    assert authenticated(dkim, TRUSTED, "corp.jp", channel="pipe")
    assert authenticated(dmarc, TRUSTED, "corp.jp", channel="pipe")


def test_untrusted_or_failing_or_foreign_results_do_not_count() -> None:
    cases = [
        [("Authentication-Results", "evil.example; dkim=pass header.d=corp.jp"), RECEIVED],
        [("Authentication-Results", f"{TRUSTED}; dkim=fail header.d=corp.jp"), RECEIVED],
        [("Authentication-Results", f"{TRUSTED}; dkim=pass header.d=other.jp"), RECEIVED],
        # placed by the sender: below the trusted server's Received line
        [RECEIVED, ("Authentication-Results", f"{TRUSTED}; dkim=pass header.d=corp.jp")],
        [],
    ]
    for headers in cases:
        assert not authenticated(headers, TRUSTED, "corp.jp", channel="pipe"), headers
