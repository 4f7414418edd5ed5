"""Link tokens and Authentication-Results: pure checks that authority depends on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailbot.authres import authenticated
from mailbot.tokens import check_link_token, link_token

SECRET = b"k" * 32
NOW = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)


def test_link_token_opens_its_receipt_until_it_expires() -> None:
    token = link_token(SECRET, "260001A", NOW + timedelta(days=90))
    assert check_link_token(SECRET, token, receipt_no="260001A", now=NOW)
    assert not check_link_token(SECRET, token, receipt_no="260002A", now=NOW)
    assert not check_link_token(SECRET, token, receipt_no="260001A", now=NOW + timedelta(days=91))
    assert not check_link_token(b"other" * 8, token, receipt_no="260001A", now=NOW)


def test_tampered_link_token_is_refused() -> None:
    token = link_token(SECRET, "260001A", NOW + timedelta(days=1))
    expiry, signature = token.split(".", 1)
    later = str(int(expiry) + 10**8)
    assert not check_link_token(SECRET, f"{later}.{signature}", receipt_no="260001A", now=NOW)
    assert not check_link_token(SECRET, "garbage", receipt_no="260001A", now=NOW)
    assert not check_link_token(SECRET, "", receipt_no="260001A", now=NOW)


TRUSTED = "mx.example.jp"
RECEIVED = ("Received", "from a by mx.example.jp")


def test_trusted_dkim_or_dmarc_pass_above_received_counts() -> None:
    dkim = [("Authentication-Results", f"{TRUSTED}; dkim=pass header.d=corp.jp"), RECEIVED]
    dmarc = [
        ("Authentication-Results", f"{TRUSTED}; spf=pass; dmarc=pass (p=none) header.from=corp.jp"),
        RECEIVED,
    ]
    assert authenticated(dkim, TRUSTED, "corp.jp")
    assert authenticated(dmarc, TRUSTED, "corp.jp")


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
        assert not authenticated(headers, TRUSTED, "corp.jp"), headers
