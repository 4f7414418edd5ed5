"""Who a staff reply really came from, over real SMTP and through ingest (both databases).

Issue 13, item 2: with the gateway as the MX, two staff members each wrote
``Authentication-Results: <trusted id>; dkim=pass header.d=<staff domain>`` as the first line of
their reply and the application was approved. Now only the headers a trusted relay added
count. Item 7: the envelope sender must be the From's mailbox.

The test's clients connect from 127.0.0.1 (a sender on the internet reaching the gateway
directly) or from 127.0.0.2 (the MTA in front, when it is listed in MAILBOT_TRUSTED_RELAYS).
"""

from __future__ import annotations

import smtplib
from datetime import date
from email.message import EmailMessage

import pytest

from db.engine import session_scope
from mailbot.gateway.pipe import ingest_stream
from mailbot.staff import add_staff
from tests.integration.conftest import HarnessFactory
from tests.support.harness import STAFF, Harness
from tests.support.replies import reply_address, reply_to
from tests.support.requests import form, mail
from tests.support.review import refusals, status

STAFF2 = "staff2@mailbot.localhost"
START = date(2026, 12, 15)  # a registration date far enough ahead of the harness clock
STAFF_DOMAIN = "mailbot.localhost"
AUTHSERV = "mx.mailbot.localhost"
DIRECT, RELAY = "127.0.0.1", "127.0.0.2"
# The first line, exactly: what a sender writes to pass as the trusted server.
FORGED = f"Authentication-Results: {AUTHSERV}; dkim=pass header.d={STAFF_DOMAIN}\r\n".encode()
RELAY_RECEIVED = (
    b"Received: from staff-mua.mailbot.localhost (staff-mua [192.0.2.10])\r\n"
    b"\tby mx.mailbot.localhost (Postfix) with ESMTPS id 4Abc; Fri, 27 Nov 2026 10:00:00 +0900\r\n"
)
RELAY_RESULT = (
    f"Authentication-Results: {AUTHSERV}; dkim=pass header.d={STAFF_DOMAIN}; "
    f"dmarc=pass header.from={STAFF_DOMAIN}\r\n"
).encode()


def start(harness_factory: HarnessFactory, **settings: object) -> Harness:
    h = harness_factory(approvals_required=2, trusted_authserv_id=AUTHSERV, **settings)
    with session_scope(h.engine) as session:
        add_staff(session, STAFF2, "審査 次郎")
    return h


def submit(h: Harness) -> dict[str, EmailMessage]:
    """A valid request; the review request each staff member got, by address."""
    out = h.round_trip(mail(form("1ANACA0A", start=START)))
    return {str(m["To"].addresses[0].addr_spec): m for m in out if "審査依頼" in str(m["Subject"])}


def deliver(
    h: Harness, raw: bytes, *, mail_from: str, rcpt_to: str, source: str = DIRECT
) -> list[EmailMessage]:
    """Send from ``source`` over SMTP, then let mailbot process and answer."""
    with smtplib.SMTP("127.0.0.1", h.gateway.port, source_address=(source, 0)) as client:
        client.sendmail(mail_from, [rcpt_to], raw)
    h.process()
    h.deliver()
    return h.new_mail()


# --- item 2: Authentication-Results ---------------------------------------------------------


@pytest.mark.parametrize("relays", ["", RELAY], ids=["no-relays", "relay-listed"])
def test_two_staff_forging_the_trusted_result_directly_cannot_approve(
    harness_factory: HarnessFactory, relays: str
) -> None:
    h = start(harness_factory, trusted_relays=relays)
    review = submit(h)
    answers = []
    for staff in (STAFF, STAFF2):
        forged = FORGED + reply_to(review[staff], sender=staff, body="承認")
        answers += deliver(h, forged, mail_from=staff, rcpt_to=reply_address(review[staff]))
    assert status(h) == "under_review"
    assert refusals(h) == ["not_authenticated", "not_authenticated"]
    # Each staff member is told, in the refusal's own words, to send through their server.
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in answers) == sorted([STAFF, STAFF2])
    assert all("DKIM" in m.get_body(("plain",)).get_content() for m in answers)  # type: ignore[union-attr]


def test_a_trusted_relays_result_counts(harness_factory: HarnessFactory) -> None:
    h = start(harness_factory, trusted_relays=RELAY)
    review = submit(h)
    for staff in (STAFF, STAFF2):
        # What the MTA in front hands over: its A-R above its own Received, then the reply.
        relayed = RELAY_RESULT + RELAY_RECEIVED + reply_to(review[staff], sender=staff, body="承認")
        deliver(h, relayed, mail_from=staff, rcpt_to=reply_address(review[staff]), source=RELAY)
    assert refusals(h) == []
    assert status(h) == "approved"


def test_the_relay_does_not_vouch_for_what_the_sender_wrote_below_its_received(
    harness_factory: HarnessFactory,
) -> None:
    h = start(harness_factory, trusted_relays=RELAY)
    review = submit(h)
    # The sender wrote the header and a Received of its own; the relay added only its
    # Received (it checked nothing), so the sender's header stands below the relay's.
    own = FORGED + reply_to(review[STAFF], sender=STAFF, body="承認")
    relayed = RELAY_RECEIVED + RELAY_RECEIVED + own
    deliver(h, relayed, mail_from=STAFF, rcpt_to=reply_address(review[STAFF]), source=RELAY)
    assert status(h) == "under_review"
    assert refusals(h) == ["not_authenticated"]


def test_a_relay_not_listed_is_a_sender_like_any_other(harness_factory: HarnessFactory) -> None:
    h = start(harness_factory, trusted_relays="192.0.2.0/24")
    review = submit(h)
    relayed = RELAY_RESULT + RELAY_RECEIVED + reply_to(review[STAFF], sender=STAFF, body="承認")
    deliver(h, relayed, mail_from=STAFF, rcpt_to=reply_address(review[STAFF]), source=RELAY)
    assert refusals(h) == ["not_authenticated"]


# --- through ingest: the MTA that runs the pipe is the trusted server ---------------------------


def ingest(h: Harness, raw: bytes, *, sender: str, recipient: str) -> None:
    code = ingest_stream(
        h.engine, raw, envelope_from=sender, envelope_to=[recipient], settings=h.settings
    )
    assert code == 0
    h.process()
    h.deliver()


def test_through_ingest_the_results_above_the_mtas_received_count(
    harness_factory: HarnessFactory,
) -> None:
    h = start(harness_factory)  # no trusted relays: the pipe needs none
    review = submit(h)
    for staff in (STAFF, STAFF2):
        piped = RELAY_RESULT + RELAY_RECEIVED + reply_to(review[staff], sender=staff, body="承認")
        ingest(h, piped, sender=staff, recipient=reply_address(review[staff]))
    assert refusals(h) == []
    assert status(h) == "approved"


def test_through_ingest_a_senders_own_result_below_the_mtas_received_does_not(
    harness_factory: HarnessFactory,
) -> None:
    h = start(harness_factory)
    review = submit(h)
    piped = RELAY_RECEIVED + FORGED + reply_to(review[STAFF], sender=STAFF, body="承認")
    ingest(h, piped, sender=STAFF, recipient=reply_address(review[STAFF]))
    assert refusals(h) == ["not_authenticated"]
    assert status(h) == "under_review"


# --- item 7: the envelope sender --------------------------------------------------------------


def test_a_reply_sent_with_another_envelope_sender_is_refused_and_the_staff_member_told(
    harness_factory: HarnessFactory,
) -> None:
    h = harness_factory()
    review = submit(h)[STAFF]
    forged = reply_to(review, sender=STAFF, body="承認")
    out = deliver(h, forged, mail_from="mallory@attacker.example", rcpt_to=reply_address(review))
    assert status(h) == "under_review"
    assert refusals(h) == ["envelope_sender_differs"]
    (notice,) = out  # to the real staff member (the From), never to the envelope sender
    assert str(notice["To"].addresses[0].addr_spec) == STAFF
    text = notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "envelope sender differs" in text
    # A reply sent by the staff member's own server decides.
    genuine = reply_to(review, sender=STAFF, body="承認")
    deliver(h, genuine, mail_from=STAFF, rcpt_to=reply_address(review))
    assert status(h) == "approved"


@pytest.mark.parametrize(
    "envelope",
    [
        "Staff+replies@MAILBOT.localhost",
        "prvs=0123abcd=staff@mailbot.localhost",  # BATV
        "SRS0=HhH1=T2=mailbot.localhost=staff@forwarder.example",  # through a forwarder
    ],
)
def test_rewritten_return_paths_of_the_staff_members_own_mail_are_not_refused(
    harness_factory: HarnessFactory, envelope: str
) -> None:
    h = harness_factory()
    review = submit(h)[STAFF]
    deliver(
        h,
        reply_to(review, sender=STAFF, body="承認"),
        mail_from=envelope,
        rcpt_to=reply_address(review),
    )
    assert refusals(h) == []
    assert status(h) == "approved"


def test_the_envelope_check_can_be_turned_off(harness_factory: HarnessFactory) -> None:
    h = harness_factory(review_envelope_check=False)
    review = submit(h)[STAFF]
    raw = reply_to(review, sender=STAFF, body="承認")
    deliver(h, raw, mail_from="bounces-17@mailer.example", rcpt_to=reply_address(review))
    assert status(h) == "approved"


def test_the_log_says_at_start_when_no_reply_over_smtp_can_be_authenticated(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    harness_factory(trusted_authserv_id=AUTHSERV)
    assert "MAILBOT_TRUSTED_RELAYS is not" in caplog.text
    caplog.clear()
    harness_factory(trusted_authserv_id=AUTHSERV, trusted_relays=RELAY)
    assert "MAILBOT_TRUSTED_RELAYS is not" not in caplog.text
