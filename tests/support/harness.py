"""mailbot in one test process: a real SMTP gateway on a loopback port, the real worker and
outbox, a Maildir relay, the demo registry and schedule, and a fixed clock.

Tests talk to it only the way users and operators do: SMTP in, mail out of the Maildir, and
the database for what an operator would see with the CLI.
"""

from __future__ import annotations

import asyncio
import mailbox
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from db.engine import session_scope
from db.models import Application, AuditEvent, InboundMessage, OutboundMessage
from mailbot.calendar import BusinessCalendar
from mailbot.config import Settings
from mailbot.gateway.smtp import SmtpGateway
from mailbot.intake import IntakeContext
from mailbot.notify import intent_renderer
from mailbot.outbox import MaildirTransport, deliver_due
from mailbot.registry import import_registry
from mailbot.schedule_table import import_schedule
from mailbot.staff import add_staff
from mailbot.worker import drain
from tests.conftest import EXAMPLES
from tests.support.loop import LoopThread
from tests.support.requests import INTAKE, YAMADA
from tests.support.smtp import send

# Friday 2026-11-27 10:00 in Tokyo. With the default lead of 4 business days the earliest start
# date is Thursday 12/3; the demo schedule's registration dates are 12/1, 12/8, 12/15, ….
NOW = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
STAFF = "staff@mailbot.localhost"


def read_maildir(path: Path) -> list[EmailMessage]:
    """Every message in the Maildir at ``path`` (none when there is no Maildir yet)."""
    if not path.exists():
        return []
    box = mailbox.Maildir(path, create=False)
    parser = BytesParser(policy=policy.default)
    found = []
    for key in sorted(box.keys()):
        message = parser.parsebytes(box.get_bytes(key))
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


@dataclass
class Harness:
    engine: Engine
    settings: Settings
    gateway: SmtpGateway
    now: datetime = NOW
    _seen: set[str] = field(default_factory=set)

    def send(
        self, raw: bytes, *, mail_from: str = YAMADA, rcpt_to: list[str] | str = INTAKE
    ) -> dict[str, tuple[int, bytes]]:
        return send(self.gateway.port, raw, mail_from=mail_from, rcpt_to=rcpt_to)

    def process(self) -> int:
        ctx = IntakeContext(settings=self.settings, calendar=BusinessCalendar())
        return drain(self.engine, ctx, lambda: self.now)

    def deliver(self) -> int:
        transport = MaildirTransport(self.maildir_path)
        return asyncio.run(
            deliver_due(
                self.engine,
                transport,
                now=self.now,
                max_attempts=self.settings.outbox_max_attempts,
                backoff_seconds=self.settings.outbox_backoff_seconds,
                render=intent_renderer(self.settings),  # the applied notice, as serve does
            )
        )

    def round_trip(self, raw: bytes, **kwargs: str) -> list[EmailMessage]:
        """Send, process, deliver; return the mails that came out because of it."""
        self.send(raw, **kwargs)
        self.process()
        self.deliver()
        return self.new_mail()

    @property
    def maildir_path(self) -> Path:
        path = self.settings.relay_target.path
        assert path is not None
        return path

    def all_mail(self) -> list[EmailMessage]:
        return read_maildir(self.maildir_path)

    def new_mail(self) -> list[EmailMessage]:
        fresh = [m for m in self.all_mail() if str(m["Message-ID"]) not in self._seen]
        self._seen.update(str(m["Message-ID"]) for m in fresh)
        return fresh

    def session(self) -> Iterator[Session]:
        return session_scope(self.engine)  # type: ignore[return-value]

    def applications(self) -> list[Application]:
        with session_scope(self.engine) as session:
            return list(session.exec(select(Application).order_by(col(Application.id))))

    def inbound(self) -> list[InboundMessage]:
        with session_scope(self.engine) as session:
            return list(session.exec(select(InboundMessage).order_by(col(InboundMessage.id))))

    def outbound(self) -> list[OutboundMessage]:
        with session_scope(self.engine) as session:
            return list(session.exec(select(OutboundMessage).order_by(col(OutboundMessage.id))))

    def audit_events(self, *names: str) -> list[AuditEvent]:
        """The audit log, oldest first; only the events named, when any are."""
        with session_scope(self.engine) as session:
            query = select(AuditEvent).order_by(col(AuditEvent.id))
            if names:
                query = query.where(col(AuditEvent.event).in_(names))
            return list(session.exec(query))


def load_demo(engine: Engine) -> None:
    with session_scope(engine) as session:
        import_registry(session, EXAMPLES / "registry-demo.csv")
        import_schedule(session, EXAMPLES / "schedule-demo.txt")
        add_staff(session, STAFF, "審査 太郎")


def start_harness(engine: Engine, settings: Settings, loop: LoopThread) -> Harness:
    load_demo(engine)
    gateway = SmtpGateway(engine, settings, port=0)
    loop.run(gateway.start())
    return Harness(engine=engine, settings=settings, gateway=gateway)


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")
