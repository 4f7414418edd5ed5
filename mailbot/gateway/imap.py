"""The IMAP gateway: reads the intake mailbox, stores raw bytes, then settles each message.

For organisations that give mailbot a mailbox instead of an MX. The same promise as SMTP:

* **Nothing accepted is lost.** Messages are fetched with ``BODY.PEEK[]`` and stored through
  ``store_messages`` (a batch in one transaction), which commits before it returns. Only then
  are they settled: moved to ``MAILBOT_IMAP_PROCESSED_FOLDER`` (``MOVE``; ``COPY`` +
  ``\\Deleted`` + ``EXPUNGE`` where the server has no MOVE) or, with
  ``MAILBOT_IMAP_AFTER_STORE=flag``, marked ``$MailbotStored``.
* **Nothing happens twice.** Every pass searches the whole folder for unsettled messages, so
  a crash between store and settle, or a new UIDVALIDITY (mailbox rebuilt or restored), just
  means the message is fetched again: the store finds its SHA-256 and answers "duplicate",
  and the message is settled. No UID is remembered across passes, so none can go stale.
* **Dependable wake-up.** IDLE where the server has it, left and re-issued at least every
  ``MAILBOT_IMAP_RESCAN_SECONDS`` (and never past ``MAILBOT_IMAP_IDLE_SECONDS``, below the
  29 minutes of RFC 2177), and a full pass each time as the safety net for IDLE notices that
  never come. Without IDLE, a pass every ``MAILBOT_IMAP_RESCAN_SECONDS``.
* **Resilience.** A lost connection (BYE, timeout, network) is re-opened with exponential
  backoff; a refused login, an untrusted certificate or a missing folder stops the IMAP side
  with one ERROR line (no retry storm) while the rest of ``mailbot serve`` keeps running.

The store takes bytes, so a message nobody can parse is stored like any other; the intake
worker quarantines it later, and the messages after it go on.

Blocking imapclient calls run in worker threads (``asyncio.to_thread``); IDLE waits in short
slices so that a stop request is seen within about half a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import getaddresses

from sqlalchemy import Engine

from mailbot.addresses import is_own_address
from mailbot.config import Settings
from mailbot.errors import ConfigError, MailbotError
from mailbot.gateway.imap_mailbox import (
    FLAG,
    MOVE,
    STORED_FLAG,
    ImapError,
    ImapFatalError,
    ImapTarget,
    Mailbox,
    describe,
    open_mailbox,
    parse_imap_url,
    read_password,
)
from mailbot.gateway.store import Incoming, StoreResult, header_block, store_messages

log = logging.getLogger("mailbot.gateway.imap")

CHANNEL = "imap"
# A commit per batch: 2,070-2,350 messages/s, 150-225 with one per message (bench/imap.py)
FETCH_BATCH = 100  # messages per FETCH, per commit and per MOVE
# Messages up to this size travel in batches (at most FETCH_BATCH x this, 16 MB, in memory at
# once); larger ones, up to MAILBOT_MAX_MESSAGE_BYTES, one at a time.
SMALL_MESSAGE_BYTES = 160 * 1024
IDLE_SLICE_SECONDS = 0.5  # how long one blocking wait in IDLE lasts; bounds the stop delay
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0
# Headers the delivering server adds with the address the mail was really sent to (the
# mailbox's own address is often another name for it). Added by the sender instead, they could
# only route a request as a follow-up; authority never comes from an address.
# Found with a pattern, as store.py finds Message-ID: a full header parse per message cost as
# much as all the IMAP work of a pass.
_RECIPIENT_HEADER = re.compile(
    rb"^(?:x-original-to|delivered-to)[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE
)

AfterStore = Callable[[int, StoreResult], None]


def _never() -> bool:
    return False


@dataclass(frozen=True)
class DrainResult:
    """What one pass over the folder did."""

    stored: int = 0  # new inbound rows
    duplicates: int = 0  # already stored (a crash before settling, a restored mailbox)
    skipped: int = 0  # left in the folder: too large, or the server would not hand them out

    def __add__(self, other: DrainResult) -> DrainResult:
        return DrainResult(
            self.stored + other.stored,
            self.duplicates + other.duplicates,
            self.skipped + other.skipped,
        )

    @property
    def settled(self) -> int:
        return self.stored + self.duplicates


@dataclass(frozen=True)
class CheckResult:
    """What ``mailbot imap check`` shows."""

    target: str
    security: str
    features: tuple[str, ...]
    uidvalidity: int
    messages: int
    pending: int
    after_store: str
    processed_folder: str
    processed_messages: int | None  # None: the folder does not exist yet
    rescan_seconds: float

    def lines(self) -> list[str]:
        return [
            f"mailbox:     {self.target} ({self.security})",
            f"folder:      {self.messages} message(s), {self.pending} not yet stored by "
            f"mailbot (UIDVALIDITY {self.uidvalidity})",
            f"server:      {', '.join(self.features) or 'no IDLE, MOVE or UIDPLUS'}",
            f"wake-up:     {self._wake_up()}",
            f"after store: {self._after_store()}",
        ]

    def _wake_up(self) -> str:
        every = f"{self.rescan_seconds:g} s"
        if "IDLE" in self.features:
            return f"IDLE, with a full rescan every {every}"
        return f"polling every {every} (the server has no IDLE)"

    def _after_store(self) -> str:
        if self.after_store == FLAG:
            return f"flag {STORED_FLAG} (messages stay in the folder)"
        if self.processed_messages is None:
            held = "does not exist yet; created on the first run"
        else:
            held = f"{self.processed_messages} message(s)"
        how = "MOVE" if "MOVE" in self.features else "COPY + EXPUNGE"
        return f"{how} to {self.processed_folder!r} ({held})"


@dataclass
class Backoff:
    """Exponential reconnect delays: initial, doubling, capped; reset once a pass succeeds."""

    initial: float = BACKOFF_INITIAL_SECONDS
    maximum: float = BACKOFF_MAX_SECONDS
    current: float = field(init=False)

    def __post_init__(self) -> None:
        self.current = self.initial

    def next(self) -> float:
        delay = self.current
        self.current = min(self.current * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self.current = self.initial


def envelope_recipients(raw: bytes, settings: Settings) -> list[str]:
    """The own addresses the message was delivered to, else the intake address.

    IMAP has no envelope; the delivering server's X-Original-To / Delivered-To are the closest
    thing, and they matter: a reply address (``apply+r…@``) makes the message a follow-up.
    """
    found: list[str] = []
    for value in _RECIPIENT_HEADER.findall(header_block(raw)):
        unfolded = re.sub(rb"[\r\n]", b"", value).decode("utf-8", errors="replace")
        for _, address in getaddresses([unfolded]):
            known = {seen.lower() for seen in found}
            if is_own_address(address, settings) and address.lower() not in known:
                found.append(address)
    return found or [settings.intake_address]


def _batches(uids: Sequence[int], small: set[int], size: int) -> Iterator[list[int]]:
    """UIDs in their order, small messages ``size`` at a time, every other one alone."""
    batch: list[int] = []
    for uid in uids:
        if uid in small:
            batch.append(uid)
            if len(batch) == size:
                yield batch
                batch = []
            continue
        if batch:
            yield batch
            batch = []
        yield [uid]
    if batch:
        yield batch


class ImapIntake:
    """The intake side of one mailbox; survives reconnects (it remembers the UIDVALIDITY).

    ``after_store`` is called after each committed store, before the message is settled
    (tests use it to die at exactly that point).
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        after_store: AfterStore | None = None,
        fetch_batch: int = FETCH_BATCH,
    ) -> None:
        if not settings.imap_url:
            raise ConfigError("MAILBOT_IMAP_URL is not set")
        self.engine = engine
        self.settings = settings
        self.target: ImapTarget = parse_imap_url(settings.imap_url)
        self.password = read_password(settings)
        self.mode = settings.imap_after_store
        self.after_store = after_store
        self.fetch_batch = fetch_batch
        self.uidvalidity: int | None = None
        self._reported: set[tuple[int, int]] = set()  # (UIDVALIDITY, UID) already logged

    # --- one connection -----------------------------------------------------------------------
    def connect(self) -> Mailbox:
        """Open the mailbox, ready for ``drain``; ImapFatalError when it cannot be used."""
        mailbox = open_mailbox(self.target, self.password)
        try:
            self._prepare(mailbox)
        except BaseException:
            mailbox.close()
            raise
        log.info(
            "IMAP intake connected to %s (%s; %s)",
            self.target,
            mailbox.security,
            ", ".join(mailbox.features()) or "no IDLE, MOVE or UIDPLUS",
        )
        return mailbox

    def _prepare(self, mailbox: Mailbox) -> None:
        if self.mode == MOVE:
            mailbox.ensure_folder(self.settings.imap_processed_folder)
        elif mailbox.state is not None and not mailbox.state.keywords:
            raise ImapFatalError(
                f"{self.target} does not keep custom keywords, so {STORED_FLAG} cannot mark "
                "stored messages: use MAILBOT_IMAP_AFTER_STORE=move"
            )

    def run_once(self) -> DrainResult:
        """Connect, drain the folder, disconnect (tests, the bench, one-shot runs)."""
        mailbox = self.connect()
        try:
            return self.drain(mailbox)
        finally:
            mailbox.close()

    # --- one pass -----------------------------------------------------------------------------
    def drain(self, mailbox: Mailbox, should_stop: Callable[[], bool] = _never) -> DrainResult:
        """Store and settle every unsettled message, oldest first, a batch at a time."""
        state = mailbox.select()
        self._note_uidvalidity(state.uidvalidity)
        limit = self.settings.max_message_bytes
        total = DrainResult(skipped=self._report_oversize(mailbox, state.uidvalidity))
        wanted = mailbox.pending(self.mode, at_most=limit)
        small = set(mailbox.pending(self.mode, at_most=min(limit, SMALL_MESSAGE_BYTES)))
        for batch in _batches(wanted, small, self.fetch_batch):
            if should_stop():
                break
            total += self._drain_batch(mailbox, batch, state.uidvalidity)
        if total.settled:  # what is left was reported once, at WARNING
            log.info(
                "IMAP %s: %d stored, %d already stored, %d left in the folder",
                self.target.folder,
                total.stored,
                total.duplicates,
                total.skipped,
            )
        return total

    def _note_uidvalidity(self, uidvalidity: int) -> None:
        if self.uidvalidity is not None and uidvalidity != self.uidvalidity:
            log.warning(
                "UIDVALIDITY of %s changed from %d to %d (mailbox rebuilt or restored): "
                "rescanning all of it; messages stored before are recognised by their SHA-256",
                self.target,
                self.uidvalidity,
                uidvalidity,
            )
            self._reported.clear()
        self.uidvalidity = uidvalidity

    def _report_oversize(self, mailbox: Mailbox, uidvalidity: int) -> int:
        """What SMTP refuses with 552 stays in the folder for an operator, never downloaded."""
        limit = self.settings.max_message_bytes
        oversize = mailbox.pending(self.mode, above=limit)
        news = [uid for uid in oversize if (uidvalidity, uid) not in self._reported]
        for uid, size in mailbox.sizes(news).items():
            self._report(
                uidvalidity,
                uid,
                "is %d bytes, above MAILBOT_MAX_MESSAGE_BYTES (%d); left in the folder",
                size,
                limit,
            )
        return len(oversize)

    def _drain_batch(self, mailbox: Mailbox, uids: Sequence[int], uidvalidity: int) -> DrainResult:
        bodies, failures = mailbox.fetch_bodies(uids)
        for uid, reason in failures.items():
            self._report(uidvalidity, uid, "could not be fetched (%s); left in the folder", reason)
        # A UID without a body was expunged by another client meanwhile, or refused above.
        done = [uid for uid in uids if uid in bodies]
        results = self._store(done, bodies)
        # Only now, with the whole batch committed.
        mailbox.settle(done, self.mode, self.settings.imap_processed_folder)
        duplicates = sum(result.duplicate for result in results)
        return DrainResult(len(done) - duplicates, duplicates, len(uids) - len(done))

    def _report(self, uidvalidity: int, uid: int, what: str, *args: object) -> None:
        # Once per message and process: the rescan meets the same message every minute.
        if (uidvalidity, uid) in self._reported:
            return
        self._reported.add((uidvalidity, uid))
        log.warning("IMAP %s UID %d " + what, self.target.folder, uid, *args)

    def _store(self, uids: Sequence[int], bodies: dict[int, bytes]) -> list[StoreResult]:
        """Store the batch in one transaction: one commit (one fsync) for up to 100 messages."""
        if not uids:
            return []
        results = store_messages(self.engine, [self._incoming(bodies[uid]) for uid in uids])
        for uid, result in zip(uids, results, strict=True):
            log.info(
                "IMAP %s UID %d: stored %d bytes as inbound %d%s",
                self.target.folder,
                uid,
                len(bodies[uid]),
                result.inbound_id,
                " (duplicate)" if result.duplicate else "",
            )
            if self.after_store is not None:
                self.after_store(uid, result)
        return results

    def _incoming(self, raw: bytes) -> Incoming:
        return Incoming(
            raw=raw,
            channel=CHANNEL,
            envelope_from=None,  # IMAP has no envelope sender; classification reads headers
            envelope_to=envelope_recipients(raw, self.settings),
        )


# --- mailbot serve ----------------------------------------------------------------------------
async def run_imap(
    engine: Engine,
    settings: Settings,
    stop: asyncio.Event,
    wake: asyncio.Event,
    *,
    backoff: Backoff | None = None,
    intake: ImapIntake | None = None,
) -> None:
    """Serve the IMAP mailbox until ``stop`` is set; set ``wake`` after new messages.

    When the mailbox cannot be used without an operator (login refused, untrusted certificate,
    missing folder) it logs one ERROR line and tries again only after
    ``MAILBOT_IMAP_REFUSED_RETRY_SECONDS``: slowly enough not to lock the account, and without a
    restart once the cause is fixed. Returns early on bad settings.
    """
    try:
        intake = intake or ImapIntake(engine, settings)
    except ConfigError as exc:
        log.error("IMAP intake not started: %s", exc)
        return
    retry = backoff or Backoff()
    while not stop.is_set():
        try:
            await _serve_mailbox(intake, stop, wake, retry)
        except ImapFatalError as exc:
            wait = settings.imap_refused_retry_seconds
            log.error(
                "IMAP intake stopped: %s. The rest of mailbot keeps running; fix the cause "
                "(`mailbot imap check` tests it): mailbot tries again in %.0f s",
                exc,
                wait,
            )
            await _sleep_unless_stopped(stop, wait)
        except Exception as exc:  # the loop boundary: whatever broke, reconnect after a pause
            delay = retry.next()
            _log_lost(intake.target, exc, delay)
            await _sleep_unless_stopped(stop, delay)


def _log_lost(target: ImapTarget, exc: Exception, delay: float) -> None:
    # ImapError messages name the mailbox already; the others (StoreError, socket and
    # protocol errors from imapclient) are given its name here.
    what = describe(exc) if isinstance(exc, ImapError) else f"{target}: {describe(exc)}"
    expected = (MailbotError, imaplib.IMAP4.error, OSError)
    log.warning(
        "IMAP intake: %s; reconnecting in %.1f s",
        what,
        delay,
        exc_info=not isinstance(exc, expected),  # a traceback only for the unexpected
    )


async def _serve_mailbox(
    intake: ImapIntake, stop: asyncio.Event, wake: asyncio.Event, retry: Backoff
) -> None:
    mailbox = await asyncio.to_thread(intake.connect)
    try:
        while not stop.is_set():
            await _drain_until_quiet(intake, mailbox, stop, wake)
            retry.reset()
            await _wait_for_news(mailbox, intake.settings, stop)
    finally:
        await asyncio.to_thread(mailbox.close)


async def _drain_until_quiet(
    intake: ImapIntake, mailbox: Mailbox, stop: asyncio.Event, wake: asyncio.Event
) -> None:
    """Pass after pass while mail arrives during them.

    Such mail is announced (EXISTS) in the answer to one of the pass's commands, and IDLE
    does not announce it again: without another pass it would wait for the rescan.
    """
    news = True
    while news and not stop.is_set():
        result, news = await asyncio.to_thread(_pass, intake, mailbox, stop.is_set)
        if result.stored:
            wake.set()


def _pass(
    intake: ImapIntake, mailbox: Mailbox, should_stop: Callable[[], bool]
) -> tuple[DrainResult, bool]:
    return intake.drain(mailbox, should_stop), mailbox.take_news()


async def _wait_for_news(mailbox: Mailbox, settings: Settings, stop: asyncio.Event) -> None:
    """Return when the folder may have changed, the rescan is due, or ``stop`` is set."""
    if not mailbox.can_idle:
        await _sleep_unless_stopped(stop, settings.imap_rescan_seconds)
        return
    deadline = time.monotonic() + min(settings.imap_rescan_seconds, settings.imap_idle_seconds)
    news = await asyncio.to_thread(mailbox.idle_start)
    while not news and not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        news = await asyncio.to_thread(mailbox.idle_wait, min(IDLE_SLICE_SECONDS, left))
    # Not in a finally: after an error the connection is dropped, not asked to leave IDLE.
    await asyncio.to_thread(mailbox.idle_stop)


async def _sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


# --- mailbot imap check -----------------------------------------------------------------------
def check_mailbox(settings: Settings) -> CheckResult:
    """Log in, examine the folder read-only, count; raise a MailbotError with the server's reason.

    Changes nothing on the server (the processed folder is only reported, not created).
    """
    if not settings.imap_url:
        raise ConfigError("MAILBOT_IMAP_URL is not set (e.g. imaps://user@host/INBOX)")
    target = parse_imap_url(settings.imap_url)
    password = read_password(settings)
    try:
        mailbox = open_mailbox(target, password, readonly=True)
    except (imaplib.IMAP4.error, OSError) as exc:
        raise ImapError(f"cannot use {target}: {describe(exc)}") from exc
    try:
        return _inspect(mailbox, settings)
    except (imaplib.IMAP4.error, OSError) as exc:
        raise ImapError(f"cannot use {target}: {describe(exc)}") from exc
    finally:
        mailbox.close()


def _inspect(mailbox: Mailbox, settings: Settings) -> CheckResult:
    state = mailbox.select()
    mode = settings.imap_after_store
    processed = settings.imap_processed_folder
    return CheckResult(
        target=str(mailbox.target),
        security=mailbox.security,
        features=mailbox.features(),
        uidvalidity=state.uidvalidity,
        messages=state.messages,
        pending=len(mailbox.pending(mode)),
        after_store=mode,
        processed_folder=processed,
        processed_messages=mailbox.folder_messages(processed) if mode == MOVE else None,
        rescan_seconds=settings.imap_rescan_seconds,
    )


__all__ = [
    "CHANNEL",
    "STORED_FLAG",
    "Backoff",
    "CheckResult",
    "DrainResult",
    "ImapError",
    "ImapFatalError",
    "ImapIntake",
    "check_mailbox",
    "envelope_recipients",
    "run_imap",
]
