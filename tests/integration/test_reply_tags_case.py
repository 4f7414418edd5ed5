"""Reply tags in any case (issue 13, item 3), over real SMTP.

Mail systems fold the case of local parts and domains on the way. mailbot hands out
``apply+t<token>@`` and ``apply+a<token>@``; a reply that comes back as ``APPLY+T<TOKEN>@`` or
``Apply+T…@MAILBOT.LOCALHOST`` must act exactly as the lower-case one, for a staff decision and
for an applicant's 取下げ.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.harness import STAFF, Harness
from tests.support.replies import reply_address
from tests.support.requests import SATO, YAMADA
from tests.support.review import answer, submit


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


@pytest.mark.parametrize("case", list(CASES))
def test_a_staff_decision_at_an_upper_cased_reply_address_decides(
    harness: Harness, case: str
) -> None:
    sent = submit(harness)
    review = sent[f"review:{STAFF}"]
    address = CASES[case](reply_address(review))
    assert address != reply_address(review)
    out = answer(harness, review, STAFF, "承認します", to=address)
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
    out = answer(harness, receipt, YAMADA, "取下げ\n誤って送信しました", to=address)
    (application,) = harness.applications()
    assert (application.status, application.decision_reason) == ("withdrawn", "誤って送信しました")
    assert harness.inbound()[-1].kind == "withdrawal"
    assert [m["To"].addresses[0].addr_spec for m in out if "取り下げ" in str(m["Subject"])] == [
        STAFF
    ]
