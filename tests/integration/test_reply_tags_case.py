"""Reply tags in any case (issue 13, item 3), over real SMTP.

Mail systems fold the case of local parts and domains on the way. mailbot hands out
``apply+t<token>@`` and ``apply+a<token>@``; a reply that comes back as ``APPLY+T<TOKEN>@`` or
``Apply+T…@MAILBOT.LOCALHOST`` must act exactly as the lower-case one, for a staff decision and
for an applicant's 取下げ.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from email.message import EmailMessage

import pytest

from tests.support.harness import STAFF, Harness
from tests.support.replies import reply_address, reply_to
from tests.support.requests import SATO, YAMADA, form, mail

START = date(2026, 12, 15)


def _tag_upper(address: str) -> str:
    """apply+t…@domain → apply+T…@domain: the tag prefix and the token upper-cased."""
    local, _, domain = address.rpartition("@")
    base, _, tag = local.partition("+")
    return f"{base}+{tag.upper()}@{domain}"


def _all_upper(address: str) -> str:
    return address.upper()


def _mixed(address: str) -> str:
    """Apply+T…@MAILBOT.LOCALHOST, as some MTAs rewrite it."""
    local, _, domain = address.rpartition("@")
    base, _, tag = local.partition("+")
    return f"{base.capitalize()}+{tag.upper()}@{domain.upper()}"


CASES: dict[str, Callable[[str], str]] = {
    "tag": _tag_upper,
    "all": _all_upper,
    "mixed": _mixed,
}


def submit(h: Harness) -> dict[str, EmailMessage]:
    out = h.round_trip(mail(form("1ANACA0A", "1ANACA0B", start=START)))
    keyed: dict[str, EmailMessage] = {}
    for message in out:
        kind = "review" if "審査依頼" in str(message["Subject"]) else "receipt"
        keyed[f"{kind}:{message['To'].addresses[0].addr_spec}"] = message
    return keyed


def answer_at(
    h: Harness, message: EmailMessage, sender: str, body: str, address: str
) -> list[EmailMessage]:
    """Reply to ``message`` at ``address`` (envelope and To), as the sender's mailer would."""
    raw = reply_to(message, sender=sender, body=body, to=address)
    return h.round_trip(raw, mail_from=sender, rcpt_to=address)


@pytest.mark.parametrize("case", list(CASES))
def test_a_staff_decision_at_an_upper_cased_reply_address_decides(
    harness: Harness, case: str
) -> None:
    sent = submit(harness)
    review = sent[f"review:{STAFF}"]
    address = CASES[case](reply_address(review))
    assert address != reply_address(review)
    out = answer_at(harness, review, STAFF, "承認します", address)
    (application,) = harness.applications()
    assert (application.status, application.decided_by) == ("approved", STAFF)
    assert harness.inbound()[-1].kind == "decision"
    notices = [m for m in out if str(m["Subject"]) == "【NSS】利用申込確認完了のお知らせ"]
    assert sorted(m["To"].addresses[0].addr_spec for m in notices) == [SATO, YAMADA]


@pytest.mark.parametrize("case", list(CASES))
def test_an_applicants_withdrawal_at_an_upper_cased_reply_address_withdraws(
    harness: Harness, case: str
) -> None:
    sent = submit(harness)
    receipt = sent[f"receipt:{YAMADA}"]
    address = CASES[case](reply_address(receipt))
    out = answer_at(harness, receipt, YAMADA, "取下げ\n誤って送信しました", address)
    (application,) = harness.applications()
    assert (application.status, application.decision_reason) == ("withdrawn", "誤って送信しました")
    assert harness.inbound()[-1].kind == "withdrawal"
    assert [m["To"].addresses[0].addr_spec for m in out if "取り下げ" in str(m["Subject"])] == [
        STAFF
    ]
