"""Where the outbox delivers: a Maildir folder (exactly once) or an SMTP relay (at least once)."""

from __future__ import annotations

import asyncio
import hashlib
import mailbox
import os
from pathlib import Path
from typing import Protocol

import aiosmtplib

from db.models import (
    OutboundMessage,
)
from mailbot.addresses import tagged_address
from mailbot.config import RelayTarget, Settings
from mailbot.errors import MailbotError
from mailbot.outbox.queue import OutboxError

# Per SMTP command; a whole send is a handful of commands, far inside half a lease.
SMTP_TIMEOUT_SECONDS = 30.0
# Envelope sender of SMTP delivery: apply+bounce@domain, an own address, so DSNs come back
# through the gateway to mailbot instead of to some unwatched mailbox.
BOUNCE_TAG = "bounce"


class DeliveryError(MailbotError):
    """A message could not be handed to the relay."""


class TransientDeliveryError(DeliveryError):
    """Worth trying again later: the relay is down, busy, or answered 4xx."""


class PermanentDeliveryError(DeliveryError):
    """Trying again will not help: the relay answered 5xx for this message."""


class Transport(Protocol):
    # True when sending the same row twice delivers it once (the Maildir names each file after
    # its row): the outbox may then record a whole round in one commit, since a crash before
    # that commit only makes the next round find the files already there.
    idempotent: bool

    async def send(self, mail: OutboundMessage) -> None:
        """Hand ``mail.raw`` over for ``mail.recipient``; raise a DeliveryError subclass."""


def wire_bytes(mail: OutboundMessage) -> bytes:
    """The stored bytes of a claimed row (intents are rendered when claimed, never sent bare)."""
    if mail.raw is None:
        raise OutboxError(f"outbox message {mail.id} has not been rendered; it cannot be sent")
    return mail.raw


class MaildirTransport:
    """Delivers into a Maildir folder (development, demos, or a local MDA picking it up).

    Each file is written to ``tmp/`` and then linked into ``new/``, so readers never see a
    half-written file. The stored bytes are written exactly (CRLF line ends included, which
    ``mailbox``, mutt and Dovecot all read), so the file is the message as a relay would get it.

    Exactly once: the file is named after its outbox row (``<row id>.<hash of the
    Message-ID>.mailbot``), and a row whose file is already in ``new/`` (or, read meanwhile,
    in ``cur/``) is not written again. A crash between writing and recording therefore never
    makes a second copy.
    """

    idempotent = True

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    async def send(self, mail: OutboundMessage) -> None:
        await asyncio.to_thread(self._write, maildir_name(mail), wire_bytes(mail), mail.attempts)

    def _write(self, name: str, raw: bytes, attempts: int) -> None:
        try:
            new, tmp = self.path / "new", self.path / "tmp"
            if not new.is_dir():
                # MAILBOT_HOME may not exist yet; mailbox.Maildir makes cur/, new/, tmp/.
                self.path.parent.mkdir(parents=True, exist_ok=True)
                mailbox.Maildir(self.path, create=True)
            # Only a row claimed before can have a file already; a first attempt skips the
            # look into cur/, which a reader may have filled with thousands of messages.
            if attempts > 1 and self._delivered(name):
                return
            staged = tmp / name
            staged.write_bytes(raw)
            try:
                os.link(staged, new / name)
            except FileExistsError:
                pass  # written by the attempt that crashed before recording it
            finally:
                staged.unlink()
        except OSError as exc:  # a full disk or a permission problem can be fixed and retried
            raise TransientDeliveryError(f"cannot write to Maildir {self.path}: {exc}") from exc

    def _delivered(self, name: str) -> bool:
        if (self.path / "new" / name).exists():
            return True
        # A reader that has seen the file moves it to cur/ as NAME:2,FLAGS.
        with os.scandir(self.path / "cur") as entries:
            return any(entry.name.partition(":")[0] == name for entry in entries)


def maildir_name(mail: OutboundMessage) -> str:
    """The file name of a row in the Maildir: unique, and the same on every attempt."""
    digest = hashlib.sha256(mail.message_id.encode()).hexdigest()[:16]
    return f"{mail.id}.{digest}.mailbot"


class SmtpTransport:
    """Hands each message to an SMTP relay (aiosmtplib), one connection per message."""

    # A relay cannot be asked whether it already has a message: each send is recorded at
    # once, so a crash re-sends (same Message-ID) at most the one in flight.
    idempotent = False

    def __init__(
        self,
        target: RelayTarget,
        *,
        envelope_sender: str,
        helo_name: str | None = None,
        timeout: float = SMTP_TIMEOUT_SECONDS,
    ) -> None:
        if target.kind not in ("smtp", "smtps"):
            raise OutboxError(
                f"SmtpTransport needs an smtp:// or smtps:// relay, not {target.kind}"
            )
        self.target = target
        self.envelope_sender = envelope_sender
        self.helo_name = helo_name
        self.timeout = timeout

    async def send(self, mail: OutboundMessage) -> None:
        target = self.target
        try:
            await aiosmtplib.send(
                wire_bytes(mail),
                sender=self.envelope_sender,
                recipients=[mail.recipient],
                hostname=target.host,
                port=target.port,
                username=target.username,
                password=target.password,
                local_hostname=self.helo_name,
                use_tls=target.kind == "smtps",
                # Explicit False: aiosmtplib's default (None) upgrades opportunistically and
                # then fails on a relay with a certificate nobody configured us to trust.
                start_tls=target.kind == "smtp" and target.starttls,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            raise _by_code(min(codes, default=450), f"recipient refused: {exc}") from exc
        except (
            aiosmtplib.SMTPConnectResponseError,
            aiosmtplib.SMTPHeloError,
            aiosmtplib.SMTPAuthenticationError,
        ) as exc:
            # The relay turned us away before looking at this message: its availability or our
            # credentials, fixable by an operator, so keep the message.
            raise TransientDeliveryError(f"relay {target.host}:{target.port}: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _by_code(exc.code, f"relay {target.host}:{target.port}: {exc}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:  # connection, TLS, timeouts
            raise TransientDeliveryError(f"relay {target.host}:{target.port}: {exc}") from exc


def _by_code(code: int, text: str) -> DeliveryError:
    return PermanentDeliveryError(text) if 500 <= code < 600 else TransientDeliveryError(text)


def bounce_address(settings: Settings) -> str:
    return tagged_address(settings, BOUNCE_TAG)


def make_transport(settings: Settings) -> Transport:
    target = settings.relay_target
    if target.kind == "maildir":
        if target.path is None:
            raise OutboxError("MAILBOT_RELAY names a Maildir without a path")
        return MaildirTransport(target.path)
    return SmtpTransport(
        target, envelope_sender=bounce_address(settings), helo_name=settings.domain
    )
