"""What processing one inbound message led to: stored as the message's ``kind``, shown by
``mailbot inbound list``. A StrEnum, so the stored values are these plain strings."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    # Not answered
    BOUNCE = "bounce"  # a DSN: our outbound message it names is marked bounced
    AUTO_REPLY = "auto_reply"  # a robot (RFC 3834): never answered
    IGNORED = "ignored"  # our own mail looping back, or nothing to answer
    UNREADABLE = "unreadable"  # no sender to answer; the raw bytes stay for an operator
    # To the intake address
    HELP = "help"
    CONTRACT = "contract"
    ACCEPTED = "accepted"  # an application was made
    INVALID = "invalid"  # its problems were answered
    REFUSED = "refused"  # an outsider, answered with the neutral refusal
    # To a reply address
    FOLLOW_UP = "follow_up"  # recorded (and, from the addressee, forwarded to staff)
    DECISION = "decision"  # a staff decision taken (an approval, possibly one of two)
    WITHDRAWAL = "withdrawal"
    CANCELLATION = "cancellation"
    REPLY_REFUSED = "reply_refused"  # no authority: nothing changed (audited)
    ALREADY_DECIDED = "already_decided"
    DECISION_UNREADABLE = "decision_unreadable"
    DECISION_REFUSED = "decision_refused"
    CANCEL_UNREADABLE = "cancel_unreadable"
    CANCEL_REFUSED = "cancel_refused"
