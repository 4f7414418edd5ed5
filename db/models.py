"""The tables. Times are stored in UTC; domain dates (start dates, abolished-on) are plain dates.

Uniqueness that the invariants rely on lives here, in the schema, not in application code:
one row per raw message (``inbound_message.sha256``), one outbox row per (cause, kind,
recipient) (``outbound_message.dedupe_key``), one open application per user ID (the partial
unique index on ``application_item``), receipt numbers unique.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Final

from sqlalchemy import JSON, Column, Float, Index, LargeBinary, Unicode, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """The columns' default time, for a row made without one. mailbot's code takes "now" from
    its injected clock (mailbot.clock) instead, so that a test can fix it."""
    return datetime.now(UTC)


# Application statuses. "Open" ones hold their user IDs (rule 2).
UNDER_REVIEW = "under_review"
APPROVED = "approved"
REJECTED = "rejected"
WITHDRAWN = "withdrawn"
CANCELLED = "cancelled"
APPLIED = "applied"
OPEN_STATUSES = (UNDER_REVIEW, APPROVED)
APPLICATION_STATUSES = (UNDER_REVIEW, APPROVED, REJECTED, WITHDRAWN, CANCELLED, APPLIED)

# Inbound message statuses.
INBOUND_PENDING = "pending"
INBOUND_DONE = "done"
INBOUND_QUARANTINED = "quarantined"
# Every one there is: a message being processed is claimed by a row lock inside the processing
# transaction and stays ``pending`` until it commits, so there is no "processing" status.
INBOUND_STATUSES = (INBOUND_PENDING, INBOUND_DONE, INBOUND_QUARANTINED)

# Outbound message statuses.
OUTBOUND_PENDING = "pending"
OUTBOUND_SENT = "sent"
OUTBOUND_FAILED = "failed"
OUTBOUND_BOUNCED = "bounced"
OUTBOUND_STATUSES = (OUTBOUND_PENDING, OUTBOUND_SENT, OUTBOUND_FAILED, OUTBOUND_BOUNCED)

# User ID and user code statuses (UserId.status, UserCode.status): the same two for both.
# ``Final`` so that mypy takes them as the literals where a ``Literal[...]`` type wants one.
ACTIVE: Final = "active"
ABOLISHED: Final = "abolished"


class Office(SQLModel, table=True):
    __tablename__ = "office"

    code: str = Field(primary_key=True, max_length=32)
    company: str
    office_name: str
    department: str = ""
    updated_at: datetime = Field(default_factory=utcnow)


class OfficeContact(SQLModel, table=True):
    """An address the contract names for an office: who may apply, and who may be manager."""

    __tablename__ = "office_contact"
    __table_args__ = (UniqueConstraint("office_code", "email"),)

    id: int | None = Field(default=None, primary_key=True)
    office_code: str = Field(foreign_key="office.code", index=True, max_length=32)
    email: str = Field(index=True, max_length=320)


class UserCode(SQLModel, table=True):
    __tablename__ = "user_code"

    code: str = Field(primary_key=True, max_length=5)
    status: str = Field(default=ACTIVE, max_length=16)
    abolished_on: date | None = None


class UserId(SQLModel, table=True):
    __tablename__ = "user_id"

    user_id: str = Field(primary_key=True, max_length=8)
    user_code: str = Field(foreign_key="user_code.code", index=True, max_length=5)
    ident: str = Field(max_length=3)
    office_code: str = Field(foreign_key="office.code", index=True, max_length=32)
    network: str = Field(max_length=16)
    # Indexed: counting the abolished IDs (/metrics) must not read a million rows.
    status: str = Field(default=ACTIVE, max_length=16, index=True)
    abolished_on: date | None = None


class RegistrationDate(SQLModel, table=True):
    """A system registration date of the schedule table (スケジュール表)."""

    __tablename__ = "registration_date"

    day: date = Field(primary_key=True)


class Staff(SQLModel, table=True):
    __tablename__ = "staff"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, max_length=320)
    name: str = ""
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class ReceiptCounter(SQLModel, table=True):
    """Receipt numbers issued per year; bumped by an atomic upsert (see mailbot.receipts)."""

    __tablename__ = "receipt_counter"

    year: int = Field(primary_key=True)
    issued: int = 0


class InboundMessage(SQLModel, table=True):
    """A message exactly as received. Stored before the sender hears yes; the row is never
    deleted.

    Retention (mailbot.retention) empties ``raw`` of processed mail after a while, keeping the
    row (hash, envelope, size, outcome), the key headers in ``headers`` and ``raw_removed_at``;
    an emptied ``raw`` is ``b""``, never NULL, so code that reads a message it is processing
    needs no new case (quarantined and pending messages are never emptied).
    """

    __tablename__ = "inbound_message"
    __table_args__ = (
        # The worker's claim (pending, oldest first, with sizes) and the byte sums by status
        # read this index alone, never the rows with their raw bytes.
        Index("ix_inbound_message_status_id_size", "status", "id", "size"),
    )

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = Field(default_factory=utcnow, index=True)
    channel: str = Field(max_length=16)  # smtp | imap | pipe
    envelope_from: str | None = Field(default=None, max_length=320)
    envelope_to: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    message_id: str | None = Field(default=None, max_length=998)
    sha256: str = Field(unique=True, max_length=64)
    size: int
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(default=INBOUND_PENDING, max_length=16)
    kind: str | None = Field(default=None, max_length=32)
    attempts: int = 0
    error: str | None = None
    processed_at: datetime | None = None
    raw_removed_at: datetime | None = Field(default=None, index=True)
    # From, To, Cc, Subject, Date as decoded text, kept when ``raw`` is removed.
    headers: dict[str, str] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )


class Application(SQLModel, table=True):
    __tablename__ = "application"

    id: int | None = Field(default=None, primary_key=True)
    receipt_no: str = Field(unique=True, max_length=16)
    status: str = Field(default=UNDER_REVIEW, max_length=16, index=True)
    version: int = 1
    office_code: str = Field(foreign_key="office.code", index=True, max_length=32)
    sender: str = Field(max_length=320)
    applicant_name: str
    applicant_email: str = Field(max_length=320)
    applicant_phone: str
    manager_name: str
    manager_email: str = Field(max_length=320)
    reason: str
    remarks: str = ""
    desired_start_date: date
    proposed_start_date: date
    start_date: date | None = None
    received_at: datetime = Field(default_factory=utcnow)
    received_on: date  # the Japanese calendar date of receipt (申込受付年月日)
    inbound_id: int | None = Field(default=None, foreign_key="inbound_message.id")
    shared_codes_pending: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    decided_by: str | None = Field(default=None, max_length=320)
    decided_at: datetime | None = None
    decision_reason: str | None = None  # the rejection's or withdrawal's reason
    updated_at: datetime = Field(default_factory=utcnow)


class ApplicationItem(SQLModel, table=True):
    """One user ID (kind ``user_id``) or user code (kind ``user_code``) an application abolishes.

    ``open`` says the item holds its key; the partial unique index then lets the database
    refuse a second application for the same ID (rule 2) even when two workers race. Items
    are open while the application is under review or approved; a rejected, withdrawn or
    cancelled application's items let go. Applying lets go only of the code items whose code
    stays active (a shared code, which another office will name, rule 4). An applied ID or
    abolished code is never named again (rules 2 and 3 refuse it first), so its item keeps
    holding it: that costs nothing and spares rewriting every item of a big start date. So
    "open" alone does not mean "under review or approved"; join the application's status for
    that (OPEN_STATUSES).
    """

    __tablename__ = "application_item"
    __table_args__ = (
        Index(
            "uq_open_item",
            "kind",
            "key",
            unique=True,
            sqlite_where=text("open = 1"),
            postgresql_where=text("open"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    kind: str = Field(max_length=16)
    key: str = Field(max_length=8)
    open: bool = True


class OutboundMessage(SQLModel, table=True):
    """A message waiting for, or past, delivery (the transactional outbox).

    Most rows are rendered when written (``raw`` and ``subject`` set). A row without ``raw``
    is an intent: written set-based by the transaction that causes it (applying on the start
    date), it names the kind, application and recipient, and the outbox renders it, stores the
    bytes and then delivers them (see mailbot.outbox). Either way the row commits with its
    cause, and once rendered every attempt sends the same bytes and ``message_id``.
    """

    __tablename__ = "outbound_message"
    # Notices by status and kind (/healthz, /metrics) are counted from the index alone.
    __table_args__ = (Index("ix_outbound_message_status_kind", "status", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    kind: str = Field(max_length=32)
    dedupe_key: str = Field(unique=True, max_length=255)
    application_id: int | None = Field(default=None, foreign_key="application.id", index=True)
    inbound_id: int | None = Field(default=None, foreign_key="inbound_message.id")
    recipient: str = Field(max_length=320)
    message_id: str = Field(unique=True, max_length=255)
    subject: str | None = None  # None until an intent is rendered
    raw: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    status: str = Field(default=OUTBOUND_PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True)
    last_error: str | None = None
    sent_at: datetime | None = None
    # ``mailbot outbox retry`` sets it: the give-up clock (MAILBOT_OUTBOX_GIVE_UP_HOURS) runs
    # from here instead of from ``created_at``.
    requeued_at: datetime | None = None
    # Retention removed the bytes of this sent (or bounced) notice; subject, recipient and
    # Message-ID stay.
    raw_removed_at: datetime | None = None


class AutoreplyCount(SQLModel, table=True):
    """Error, help and refusal replies sent per address per day, so two robots cannot loop."""

    __tablename__ = "autoreply_count"

    address: str = Field(primary_key=True, max_length=320)
    day: date = Field(primary_key=True)
    sent: int = 0


class SigningKey(SQLModel, table=True):
    """A key that signs tokens, shared by every process on this database (see mailbot.keys).

    The one row without ``retired_at`` is the current key, which signs; a retired key still
    verifies until the longest token it signed has expired, unless it was revoked
    (``revoked_at``, ``mailbot keys revoke``): then it verifies nothing. ``material`` is
    secret: never printed or logged. ``imported`` marks a key taken over from a
    ``$MAILBOT_HOME/secret_key`` file, which also signed the reply tokens issued before keys
    were recorded (``key_id`` NULL).
    """

    __tablename__ = "signing_key"

    id: int | None = Field(default=None, primary_key=True)
    material: str = Field(unique=True, repr=False)
    created_at: datetime = Field(default_factory=utcnow)
    retired_at: datetime | None = None
    imported: bool = False
    revoked_at: datetime | None = None  # revoked (a leaked key): verifies nothing from then on


class Token(SQLModel, table=True):
    """A signed token's server-side record: single use is enforced by ``used_at``.

    ``key_id`` names the key that signed it, so that a retired key verifies exactly as long as
    its longest token lives (the index finds that expiry without reading the table).
    """

    __tablename__ = "token"
    __table_args__ = (Index("ix_token_key_expiry", "key_id", "expires_at"),)

    id: int | None = Field(default=None, primary_key=True)
    nonce: str = Field(unique=True, max_length=64)
    purpose: str = Field(max_length=32)
    application_id: int | None = Field(default=None, foreign_key="application.id", index=True)
    staff_id: int | None = Field(default=None, foreign_key="staff.id")
    recipient: str | None = Field(default=None, max_length=320)  # who it was mailed to
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    key_id: int | None = Field(default=None, foreign_key="signing_key.id")


class AuditEvent(SQLModel, table=True):
    """Append-only: who did what, when, from which message, on what evidence.

    The migration adds triggers that refuse UPDATE and DELETE on this table.
    """

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    application_id: int | None = Field(default=None, foreign_key="application.id", index=True)
    event: str = Field(max_length=64)
    actor: str = Field(max_length=320)
    inbound_id: int | None = Field(default=None, foreign_key="inbound_message.id")
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class SchedulerJob(SQLModel, table=True):
    """APScheduler's job store table, declared here so that migrations own it.

    ``apscheduler.jobstores.sqlalchemy.SQLAlchemyJobStore`` (tablename ``apscheduler_jobs``)
    reads and writes it; the columns are exactly the ones that store defines. Declaring it
    lets the schema be created under the migration lock instead of by whichever process
    first leads the scheduler, and lets a cancellation remove an application's job row in the
    cancelling transaction. Rows are APScheduler's (pickled job state): mailbot only reads
    ids and run times, and deletes rows.
    """

    __tablename__ = "apscheduler_jobs"

    id: str = Field(sa_column=Column(Unicode(191), primary_key=True))
    next_run_time: float | None = Field(default=None, sa_column=Column(Float(25), index=True))
    job_state: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


# --- The staff console (mailbot.console, docs/console.md) ---------------------------------------


class ConsoleLogin(SQLModel, table=True):
    """A login link and code mailed to one staff member: either works once, until ``expires_at``.

    Neither secret is stored: ``link_hash`` is the SHA-256 of the link's random part (the link
    is also signed, so garbage is refused before a lookup), ``code_mac`` an HMAC of the code
    under a signing key. ``code_tries`` counts wrong codes; a few and the code stops working.
    """

    __tablename__ = "console_login"

    id: int | None = Field(default=None, primary_key=True)
    staff_id: int = Field(foreign_key="staff.id", index=True)
    link_hash: str = Field(unique=True, max_length=64)
    code_mac: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    code_tries: int = 0


class ConsoleSession(SQLModel, table=True):
    """A logged-in browser. The cookie holds a random value; only its SHA-256 is stored here.

    A session works while its staff member is active, until ``ended_at`` (logout), for
    MAILBOT_CONSOLE_IDLE_MINUTES after ``last_seen_at`` and until ``expires_at`` (absolute).
    ``csrf`` is the token every form of this session posts back.
    """

    __tablename__ = "console_session"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    staff_id: int = Field(foreign_key="staff.id", index=True)
    csrf: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    ended_at: datetime | None = None


class ConsoleRateCount(SQLModel, table=True):
    """How often a bucket (``ask:ADDRESS``, ``code:ADDRESS``) was used in one clock hour."""

    __tablename__ = "console_rate"

    bucket: str = Field(primary_key=True, max_length=400)
    hour: datetime = Field(primary_key=True)
    count: int = 0
