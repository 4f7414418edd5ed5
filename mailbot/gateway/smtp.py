"""The SMTP gateway: an aiosmtpd handler that stores raw bytes and answers, nothing else.

Policy, all of it:

* RCPT: only mailbot's own addresses (``is_own_address``) are accepted; anything else gets
  ``550 5.1.1``, so mailbot is never an open relay. More than ``MAX_RECIPIENTS`` → ``452``.
* Size: the server is built with ``data_size_limit=settings.max_message_bytes``; aiosmtpd
  advertises it in EHLO (``SIZE``) and answers ``552`` both to an announced ``MAIL … SIZE=`` too
  large and to DATA that grows past it.
* DATA: the undecoded bytes are committed by the group committer's writer thread (the
  event loop keeps serving other sessions meanwhile) and only then does the client hear
  ``250 2.0.0 Ok: stored as <id>``. Any failure is ``451 4.3.0`` (the client keeps the message
  and retries; a retry of bytes already stored is answered 250 with the same id).
* Trace: the stored bytes start with the gateway's own ``Received:`` header
  (``mailbot.gateway.trace``): the client's HELO name and address, this host, ESMTP/ESMTPS,
  an id and the date. The redelivery check (SHA-256) leaves it out.
* Limits (``mailbot.gateway.limits``): more sessions than ``MAILBOT_SMTP_MAX_SESSIONS`` (in all)
  or ``…_PER_CLIENT`` (from one address) get ``421`` at connect; DATA beyond
  ``MAILBOT_SMTP_MAX_DATA`` / ``…_PER_CLIENT`` waits up to ``MAILBOT_SMTP_DATA_WAIT_SECONDS``
  for a slot, then gets ``451`` before any of the message is sent. Either way the client
  retries later.
* Memory: a message in DATA is read into one buffer (aiosmtpd keeps a list of lines and joins
  them: about three times the message), which is the very object the store hashes and writes;
  on SQLite the bytes go into the row through the blob API, without a copy.
* The null return path ``MAIL FROM:<>`` is stored as ``""``.
* STARTTLS is offered when ``MAILBOT_SMTP_TLS_CERT`` and ``MAILBOT_SMTP_TLS_KEY`` are set
  (``tls.server_tls_context``); with ``MAILBOT_SMTP_REQUIRE_TLS`` every command but EHLO, NOOP,
  STARTTLS and QUIT answers ``530`` until it is done. AUTH is never offered: mailbot takes mail
  for its own addresses and relays nothing, so it has no accounts to log in to.

Two ways to run it:

* ``SmtpGateway`` — **what ``mailbot serve`` uses.** It listens inside the caller's running
  event loop (``await gateway.start()`` … ``await gateway.stop()``), so serve has one loop, one
  place for signals, and an orderly stop: stop accepting, let stores in flight answer, then
  close the remaining sessions with ``421``.
* ``make_controller`` — aiosmtpd's threaded ``Controller`` (its own thread and loop), for
  scripts and tests that are not async themselves.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException
from sqlalchemy import Engine

from mailbot.addresses import is_own_address
from mailbot.config import Settings
from mailbot.errors import StoreError
from mailbot.gateway.group_commit import GroupCommitter
from mailbot.gateway.limits import Admission, client_address
from mailbot.gateway.store import envelope_sender
from mailbot.gateway.tls import server_tls_context
from mailbot.gateway.trace import new_trace_id, received_header

log = logging.getLogger("mailbot.gateway.smtp")

CHANNEL = "smtp"
MAX_RECIPIENTS = 50
IDENT = "mailbot ESMTP"
READY_TIMEOUT_SECONDS = 5.0
STOP_GRACE_SECONDS = 10.0
SESSION_TIMEOUT_SECONDS = 300.0  # RFC 5321 §4.5.3.2: servers wait at least 5 minutes

TEMPFAIL = "451 4.3.0 temporary storage failure, try again later"
SHUTTING_DOWN = b"421 4.3.2 mailbot shutting down, try again later\r\n"
TOO_MANY_SESSIONS = b"421 4.7.0 too many connections, try again later\r\n"
TOO_MANY_DATA = "451 4.3.2 too many messages being received, try again later"
# aiosmtpd's own AUTH mechanisms (LOGIN, PLAIN), all switched off.
BUILTIN_AUTH_MECHANISMS = [
    name.removeprefix("auth_") for name in dir(SMTP) if name.startswith("auth_")
]


class IntakeHandler:
    """aiosmtpd handler hooks (``handle_EHLO``, ``handle_RCPT``) for the intake address, and
    the store behind :class:`GatewaySMTP`'s DATA."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        max_recipients: int = MAX_RECIPIENTS,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.max_recipients = max_recipients
        # Called on the handler's event loop after a new row is committed (serve wakes the
        # intake worker with it). With the threaded Controller that is the Controller's thread.
        self.on_stored = on_stored
        # Stores running right now; touched only on the event loop's thread.
        self.in_flight = 0
        # Concurrent sessions' stores share one transaction and one fsync (group commit).
        self.committer = GroupCommitter(engine)
        # Sessions and messages in DATA at once; shared by every session of this handler.
        self.admission = Admission.from_settings(settings)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # aiosmtpd adds an AUTH line once TLS is up; mailbot has no accounts, so none is sent.
        session.host_name = hostname  # this hook replaces aiosmtpd's own bookkeeping
        return [line for line in responses if not line[4:].upper().startswith("AUTH")]

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        if not is_own_address(address, self.settings):
            return f"550 5.1.1 <{address}>: not a mailbot address"
        if address not in envelope.rcpt_tos:  # a repeated RCPT is one recipient, not two
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def store(
        self, session: Session, envelope: Envelope, data: bytearray, trace_length: int
    ) -> str:
        """Commit one received message and return the reply to DATA (``250`` only after the
        commit). ``data`` is the gateway's trace header (its first ``trace_length`` bytes) and
        then the message exactly as the client sent it."""
        self.in_flight += 1
        try:
            # Committed by the writer thread together with the other sessions' messages; the
            # event loop keeps serving sessions meanwhile.
            result = await self.committer.store(
                data,
                channel=CHANNEL,
                envelope_from=envelope_sender(envelope.mail_from),
                envelope_to=list(envelope.rcpt_tos),
                trace_length=trace_length,
            )
        except StoreError as exc:
            log.error("%r: %s; answered 451", session.peer, exc)
            return TEMPFAIL
        except Exception:
            # Whatever it was, the client gets a plain temporary failure, never our traceback.
            log.exception("%r: unexpected error while storing; answered 451", session.peer)
            return TEMPFAIL
        finally:
            self.in_flight -= 1
        log.info(
            "%r: stored %d bytes as inbound %d%s",
            session.peer,
            len(data) - trace_length,
            result.inbound_id,
            " (duplicate)" if result.duplicate else "",
        )
        if not result.duplicate:
            self._notify()
        return f"250 2.0.0 Ok: stored as {result.inbound_id}"

    def _notify(self) -> None:
        if self.on_stored is None:
            return
        try:
            self.on_stored()
        except Exception:
            # The bytes are committed: the client is owed its 250 whatever the hook did.
            log.exception("on_stored hook failed")

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # A client that cannot finish the handshake (a scanner, a too-old TLS): aiosmtpd
            # closes the connection and sends nothing; a sending MTA retries, maybe in clear.
            log.warning("STARTTLS handshake failed: %s", error.__cause__ or error)
            return "454 4.7.0 TLS not available due to temporary reason"
        # aiosmtpd's default answer quotes the exception text to the client.
        log.error("SMTP session error", exc_info=error)
        return "451 4.3.0 temporary failure, try again later"

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no store is in flight (polling: works whichever loop runs the handler)."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.in_flight == 0


class _DataState(enum.Enum):
    NOMINAL = "nominal"
    TOO_LONG = "too long"  # a line over RFC 5321's limit
    TOO_MUCH = "too much"  # more than data_size_limit


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP session with the gateway's admission at connect and its own DATA.

    DATA is aiosmtpd's own loop (the same line handling, size and line-length answers) except
    that the lines go straight into one buffer that starts with the trace header, and that a
    session must first get a DATA slot from :class:`~mailbot.gateway.limits.Admission`.
    """

    event_handler: IntakeHandler

    def __init__(self, handler: IntakeHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._client: str | None = None  # set once the connection is admitted
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._client is not None:  # STARTTLS: the same connection, now encrypted
            super().connection_made(transport)
            return
        client = client_address(transport.get_extra_info("peername"))
        over = self.event_handler.admission.open_session(client)
        if over is not None:
            log.warning("%s: connection answered 421: %s", client, over)
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(TOO_MANY_SESSIONS)
            transport.close()
            return
        self._client = client
        self._counted = True
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._client is None:  # refused at connect: aiosmtpd never started
            return
        if self._counted:
            self._counted = False
            self.event_handler.admission.close_session(self._client)
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self._client is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        admission = self.event_handler.admission
        over = await admission.enter_data(self._client)
        if over is not None:
            log.warning("%s: DATA answered 451: %s", self._client, over)
            # The transaction ends here, as after any answer to DATA: a client that does not
            # send RSET (smtplib) can start the next one with MAIL.
            self.envelope = self._create_envelope()
            await self.push(TOO_MANY_DATA)
            return
        try:
            await self._receive_and_store()
        finally:
            admission.leave_data(self._client)

    async def _receive_and_store(self) -> None:
        # aiosmtpd renews the session timeout on each command only, not on DATA's lines: a
        # client that trickles its message still loses the slot SESSION_TIMEOUT_SECONDS after
        # its DATA (tests/integration/test_smtp_limits.py).
        assert self.envelope is not None and self.session is not None
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = bytearray(self._trace_header())
        trace_length = len(data)
        limit = self.data_size_limit
        size = 0
        state = _DataState.NOMINAL
        in_long_line = False  # reading the rest of a line longer than the reader's limit
        while self.transport is not None:  # pragma: no branch (eof cancels this coroutine)
            try:
                line: bytes = await self._reader.readuntil(b"\r\n")
            except asyncio.CancelledError:
                log.info("%r: connection lost during DATA", self.session.peer)
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as exc:
                # Drain the over-long line piece by piece; answer once the data has ended.
                await self._reader.read(exc.consumed)
                size += exc.consumed
                in_long_line = True
                state, data = _DataState.TOO_LONG, bytearray()
                continue
            if not in_long_line and line == b".\r\n":
                break
            size += len(line)
            in_long_line = False
            if state is not _DataState.NOMINAL:
                continue
            if limit and size > limit:
                state, data = _DataState.TOO_MUCH, bytearray()  # free it at once
            elif len(line) > self.line_length_limit:
                state, data = _DataState.TOO_LONG, bytearray()
            elif line.startswith(b"."):  # dot-stuffing, RFC 5321 §4.5.2
                data += memoryview(line)[1:]
            else:
                data += line
        if state is _DataState.TOO_LONG:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
        elif state is _DataState.TOO_MUCH:
            await self.push("552 Error: Too much mail data")
        else:
            status = await self.event_handler.store(self.session, self.envelope, data, trace_length)
            del data  # this session's reference: the buffer is freed before the reply is sent
            self.envelope = self._create_envelope()  # aiosmtpd's post-DATA state
            await self.push(status)
            return
        self.envelope = self._create_envelope()  # aiosmtpd's post-DATA state

    def _trace_header(self) -> bytes:
        assert self.session is not None and self._client is not None
        return received_header(
            helo=self.session.host_name,
            client=self._client,
            by=self.hostname,
            esmtp=self.session.extended_smtp,
            tls=self.session.ssl is not None,
            trace_id=new_trace_id(),
            when=datetime.now().astimezone(),
        )


def smtp_options(settings: Settings, hostname: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``aiosmtpd.smtp.SMTP``: the one place the server is configured.

    Reads the TLS certificate and key when set: a ConfigError names the setting and the path.
    """
    return {
        "data_size_limit": settings.max_message_bytes,
        "decode_data": False,  # bytes in, bytes stored: decoding is the intake worker's job
        "enable_SMTPUTF8": True,  # accept UTF-8 addresses; the body is bytes either way
        # An explicit name: without one aiosmtpd calls socket.getfqdn() (a DNS lookup) for
        # every connection.
        "hostname": hostname or settings.domain,
        "ident": IDENT,
        "timeout": SESSION_TIMEOUT_SECONDS,
        "tls_context": server_tls_context(settings),
        "require_starttls": settings.smtp_require_tls,
        "auth_exclude_mechanism": BUILTIN_AUTH_MECHANISMS,
    }


def make_controller(
    engine: Engine, settings: Settings, *, hostname: str | None = None
) -> Controller:
    """A threaded aiosmtpd Controller on ``settings.smtp_address``; call ``start()``/``stop()``.

    ``hostname`` is the name in the greeting and EHLO reply (default ``settings.domain``); the
    listening address always comes from ``settings.smtp_address``.
    """
    address = settings.smtp_address
    options = smtp_options(settings, hostname)
    return _GatewayController(
        IntakeHandler(engine, settings),
        hostname=address.host,
        port=address.port,
        ready_timeout=READY_TIMEOUT_SECONDS,
        server_hostname=options.pop("hostname"),
        **options,
    )


class _GatewayController(Controller):
    def factory(self) -> SMTP:
        return GatewaySMTP(self.handler, **self.SMTP_kwargs)


class SmtpGateway:
    """The SMTP listener inside the caller's event loop (what ``mailbot serve`` runs).

    ``port`` overrides ``settings.smtp_address.port``; 0 asks the kernel for a free port (tests),
    readable afterwards from ``gateway.port``. ``on_stored`` is called on this loop after each
    newly committed message (not for duplicates), e.g. ``wake.set`` for the intake worker.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        hostname: str | None = None,
        port: int | None = None,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self.handler = IntakeHandler(engine, settings, on_stored=on_stored)
        self.settings = settings
        self._options = smtp_options(settings, hostname)
        self._port = settings.smtp_address.port if port is None else port
        self._server: asyncio.Server | None = None
        # Weak: a session forgets itself when its connection is gone.
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    @property
    def port(self) -> int:
        """The port actually listened on (useful after asking for port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the SMTP gateway is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the SMTP gateway is already listening")
        loop = asyncio.get_running_loop()
        host = self.settings.smtp_address.host
        self._server = await loop.create_server(self._new_session, host=host, port=self._port)
        log.info("SMTP gateway listening on %s:%d; %s", host, self.port, self.tls_summary)
        if self.settings.trusted_authserv_id and not self.settings.trusted_relays:
            log.warning(
                "MAILBOT_TRUSTED_AUTHSERV_ID is set but MAILBOT_TRUSTED_RELAYS is not: no "
                "Authentication-Results of mail received over SMTP count, so staff replies that "
                "come this way are refused as not authenticated (docs/operations.md, "
                '"Trusted relays and Authentication-Results")'
            )

    @property
    def tls_summary(self) -> str:
        """What the log says about STARTTLS at start."""
        if self._options["tls_context"] is None:
            return "STARTTLS not offered (MAILBOT_SMTP_TLS_CERT and _KEY unset)"
        if self._options["require_starttls"]:
            return "STARTTLS offered and required before MAIL (MAILBOT_SMTP_REQUIRE_TLS)"
        return "STARTTLS offered"

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop accepting, give stores in flight ``grace`` seconds to answer, close the rest.

        A session cut off here has not been told 250, so its client retries later; a store
        that committed anyway is then found again by its SHA-256 (answered 250, no second row).
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if not await self.handler.wait_idle(grace):
            log.warning("SMTP gateway stopping with %d store(s) in flight", self.handler.in_flight)
        self._close_sessions()
        await server.wait_closed()
        await self.handler.committer.close()
        log.info("SMTP gateway stopped")

    async def __aenter__(self) -> SmtpGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _new_session(self) -> SMTP:
        session = GatewaySMTP(self.handler, loop=asyncio.get_running_loop(), **self._options)
        self._sessions.add(session)
        return session

    def _close_sessions(self) -> None:
        for session in list(self._sessions):
            transport = session.transport
            if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
                # 421 is the reply RFC 5321 §3.8 gives for a server that must shut down.
                transport.write(SHUTTING_DOWN)
                transport.close()
