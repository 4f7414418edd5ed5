"""Staff review by reply: review requests out, decisions in, and what a decision changes.

- :mod:`~mailbot.review.requests`: the review request each active staff member gets;
- :mod:`~mailbot.review.commands`: reading 承認 / 却下 / 取下げ / 取消 from a reply's first line;
- :mod:`~mailbot.review.authority`: whether a reply may act (token, staff registry, From,
  envelope sender, Authentication-Results);
- :mod:`~mailbot.review.replies`: staff and applicant replies, dispatched;
- :mod:`~mailbot.review.decide`: approve / reject (two-person approval), withdraw;
- :mod:`~mailbot.review.cancel`: cancelling an approved application before its start date;
- :mod:`~mailbot.review.follow_up`: an applicant's free text forwarded to staff.

The CLI (``mailbot approve`` / ``reject`` / ``cancel``) goes through :func:`decide` and
:func:`cancel_application`, the same code and audit as mail.
"""

from mailbot.review.cancel import CancelError, cancel_application
from mailbot.review.commands import Action, Decision, read_decision
from mailbot.review.context import ReviewContext
from mailbot.review.decide import DecisionError, decide
from mailbot.review.replies import handle_applicant_reply, handle_review_reply
from mailbot.review.requests import REVIEW_TAG, send_review_requests

__all__ = [
    "REVIEW_TAG",
    "Action",
    "CancelError",
    "Decision",
    "DecisionError",
    "ReviewContext",
    "cancel_application",
    "decide",
    "handle_applicant_reply",
    "handle_review_reply",
    "read_decision",
    "send_review_requests",
]
