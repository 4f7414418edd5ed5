"""One blocking IMAP connection to the intake folder (imapclient), and nothing about storage.

``imap.py`` drives it: it decides what to fetch and when to settle; this module only speaks
IMAP. Every call blocks, so async code runs them in a worker thread.

Security of ``MAILBOT_IMAP_URL``:

* ``imaps://`` — TLS from the first byte, certificate and host name verified.
* ``imap://`` — STARTTLS whenever the server offers it (verified the same way); a plain
  connection only to a loopback address, where the password never crosses a network.

Errors: ``ImapFatalError`` for what retrying cannot fix (login refused, no TLS to a remote
host, an untrusted certificate, a missing folder); ``ImapError`` for a failure that may pass;
imapclient's own exceptions and ``OSError`` pass through from the commands after login (the
caller's loop boundary treats them as a lost connection).
"""

from __future__ import annotations

import contextlib
import imaplib
import ipaddress
import re
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import LoginError

from mailbot.config import Settings
from mailbot.errors import ConfigError, MailbotError

DEFAULT_PORTS = {"imaps": 993, "imap": 143}
CONNECT_TIMEOUT = 15.0
# Longer than any single command should take; a silent network loses the connection here.
READ_TIMEOUT = 60.0
CLOSE_TIMEOUT = 5.0
# The keyword that marks a stored message when MAILBOT_IMAP_AFTER_STORE=flag.
STORED_FLAG = "$MailbotStored"
# RFC 5530 response code of a login refused for now (backend down), not for bad credentials.
TRY_LATER_CODE = "[UNAVAILABLE]"

MOVE = "move"
FLAG = "flag"

_BYTES_REPR = re.compile(r"b(['\"])(.*)\1", re.DOTALL)
_IMAP_ERROR = imaplib.IMAP4.error
_IMAP_ABORT = imaplib.IMAP4.abort


class ImapError(MailbotError):
    """The IMAP server could not be used just now; trying again later may work."""


class ImapFatalError(ImapError):
    """The IMAP mailbox cannot be used until an operator fixes something; retrying is futile."""


class ConnectionLost(ImapError):
    """The server said BYE or closed the connection."""


@dataclass(frozen=True)
class ImapTarget:
    """``MAILBOT_IMAP_URL`` taken apart. ``str()`` is safe to log (it never holds a password)."""

    scheme: str
    host: str
    port: int
    username: str
    folder: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.username}@{self.host}:{self.port}/{self.folder}"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: it could resolve anywhere


@dataclass(frozen=True)
class FolderState:
    uidvalidity: int
    messages: int
    # Whether STORE may set a keyword of our own here (PERMANENTFLAGS has \*); flag mode
    # needs it. Always False when the folder was opened read-only.
    keywords: bool


def parse_imap_url(url: str) -> ImapTarget:
    """``imaps://user@host[:port][/folder]`` → ImapTarget; ConfigError naming the setting."""
    parts = urlsplit(url.strip())
    if parts.scheme not in DEFAULT_PORTS:
        raise ConfigError(f"MAILBOT_IMAP_URL must start with imaps:// or imap://, not {url!r}")
    if parts.password is not None:
        # The URL is logged and shown by `mailbot imap check`; the password must not be.
        raise ConfigError(
            "MAILBOT_IMAP_URL must not contain the password: set MAILBOT_IMAP_PASSWORD "
            "or MAILBOT_IMAP_PASSWORD_FILE"
        )
    if not parts.hostname or not parts.username:
        raise ConfigError(
            f"MAILBOT_IMAP_URL needs a user and a host (imaps://user@host/INBOX), not {url!r}"
        )
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ConfigError(f"MAILBOT_IMAP_URL has a bad port: {url!r}") from exc
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    return ImapTarget(parts.scheme, parts.hostname, port, unquote(parts.username), folder)


def read_password(settings: Settings) -> str:
    """``MAILBOT_IMAP_PASSWORD``, else the content of ``MAILBOT_IMAP_PASSWORD_FILE``."""
    if settings.imap_password is not None:
        return settings.imap_password.get_secret_value()
    path = settings.imap_password_file
    if path is None:
        raise ConfigError(
            "MAILBOT_IMAP_URL is set but no password: set MAILBOT_IMAP_PASSWORD or "
            "MAILBOT_IMAP_PASSWORD_FILE"
        )
    try:
        # Only the line end an editor adds is dropped: spaces may be part of a password.
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"MAILBOT_IMAP_PASSWORD_FILE {path}: {exc.strerror or exc}") from exc


def describe(exc: BaseException) -> str:
    """An exception as one line for the log, with the server's own words when there are some."""
    if isinstance(exc, _IMAP_ERROR | ImapError) and exc.args:
        reason = exc.args[0]
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        # imapclient's LoginError carries str(b'...'), the repr of the server's bytes.
        quoted = _BYTES_REPR.fullmatch(text.strip())
        return (quoted.group(2) if quoted else text).strip()
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Mailbox:
    """A logged-in connection; ``select`` opens the intake folder (again) before each drain."""

    def __init__(self, client: Any, target: ImapTarget, security: str, readonly: bool) -> None:
        self.client = client
        self.target = target
        self.security = security
        self.readonly = readonly
        self.state: FolderState | None = None  # as of the last select()

    # --- what the server can do -------------------------------------------------------------
    def has(self, capability: str) -> bool:
        return bool(self.client.has_capability(capability))

    @property
    def can_idle(self) -> bool:
        return self.has("IDLE")

    def features(self) -> tuple[str, ...]:
        """The capabilities the intake cares about, for logs and ``mailbot imap check``."""
        return tuple(name for name in ("IDLE", "MOVE", "UIDPLUS") if self.has(name))

    # --- the intake folder ------------------------------------------------------------------
    def select(self) -> FolderState:
        """SELECT (EXAMINE when read-only) the intake folder; its UIDVALIDITY and size.

        Selecting afresh also empties imaplib's store of untagged responses, which otherwise
        grows by one entry per moved message for as long as the connection lives.
        """
        try:
            info = self.client.select_folder(self.target.folder, readonly=self.readonly)
        except _IMAP_ABORT:
            raise
        except _IMAP_ERROR as exc:
            self._raise_select_error(exc)
        flags = info.get(b"PERMANENTFLAGS", ())
        self.state = FolderState(
            uidvalidity=int(info[b"UIDVALIDITY"]),
            messages=int(info[b"EXISTS"]),
            keywords=b"\\*" in flags or STORED_FLAG.encode() in flags,
        )
        self.take_news()  # the SELECT's own EXISTS is not news
        return self.state

    def take_news(self) -> bool:
        """True when the server announced new mail (EXISTS) since the last select or call.

        The server tells of mail that arrived during a command in that command's answer, and
        IDLE does not tell it again. imaplib files such untagged answers away in
        ``untagged_responses`` instead of returning them, and imapclient has no public way to
        read them, hence the look inside. Should that ever change, say "yes": one pass more.
        """
        untagged = getattr(getattr(self.client, "_imap", None), "untagged_responses", None)
        if not isinstance(untagged, dict):
            return True
        return untagged.pop("EXISTS", None) is not None

    def _raise_select_error(self, exc: imaplib.IMAP4.error) -> NoReturn:
        # imaplib drops the response code ([NONEXISTENT]) from the text, so ask directly.
        if not self.client.folder_exists(self.target.folder):
            raise ImapFatalError(
                f"folder {self.target.folder!r} does not exist on {self.target} "
                "(check the path of MAILBOT_IMAP_URL)"
            ) from exc
        raise ImapError(f"cannot open {self.target}: {describe(exc)}") from exc

    def ensure_folder(self, name: str) -> None:
        if name == self.target.folder:
            raise ImapFatalError(
                f"MAILBOT_IMAP_PROCESSED_FOLDER is the intake folder itself ({name!r})"
            )
        if self.client.folder_exists(name):
            return
        try:
            self.client.create_folder(name)
        except _IMAP_ABORT:
            raise
        except _IMAP_ERROR as exc:
            if self.client.folder_exists(name):  # created meanwhile by another mailbot
                return
            raise ImapFatalError(
                f"cannot create the processed folder {name!r} on {self.target}: {describe(exc)}"
            ) from exc

    def folder_messages(self, name: str) -> int | None:
        """How many messages ``name`` holds, None when it does not exist."""
        if not self.client.folder_exists(name):
            return None
        return int(self.client.folder_status(name, [b"MESSAGES"])[b"MESSAGES"])

    # --- messages -----------------------------------------------------------------------------
    def pending(
        self, mode: str, *, at_most: int | None = None, above: int | None = None
    ) -> list[int]:
        """UIDs not yet settled, oldest first, optionally only those of at most / above a size.

        The size test runs in the server (SEARCH SMALLER / LARGER on RFC822.SIZE): cheaper
        than fetching every size, and a message too large is never downloaded. Messages
        marked \\Deleted are someone's trash and are left alone.
        """
        criteria: list[str] = ["NOT", "DELETED"]
        if mode == FLAG:
            criteria += ["UNKEYWORD", STORED_FLAG]
        if at_most is not None:
            criteria += ["SMALLER", str(at_most + 1)]
        if above is not None:
            criteria += ["LARGER", str(above)]
        return sorted(int(uid) for uid in self.client.search(criteria))

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        if not uids:
            return {}
        found = self.client.fetch(list(uids), ["RFC822.SIZE"])
        return {int(uid): int(data[b"RFC822.SIZE"]) for uid, data in found.items()}

    def fetch_bodies(self, uids: Sequence[int]) -> tuple[dict[int, bytes], dict[int, str]]:
        """The raw bytes (``BODY.PEEK[]``: \\Seen stays as it was) and why others failed.

        A server may refuse a whole FETCH for one broken message; then each message is asked
        for alone, so that one cannot hold back the rest.
        """
        if not uids:
            return {}, {}
        try:
            return self._bodies(uids), {}
        except _IMAP_ABORT:
            raise
        except _IMAP_ERROR as exc:
            if len(uids) == 1:
                return {}, {uids[0]: describe(exc)}
        bodies: dict[int, bytes] = {}
        failures: dict[int, str] = {}
        for uid in uids:
            found, failed = self.fetch_bodies([uid])
            bodies.update(found)
            failures.update(failed)
        return bodies, failures

    def _bodies(self, uids: Sequence[int]) -> dict[int, bytes]:
        found = self.client.fetch(list(uids), ["BODY.PEEK[]"])
        # A UID missing from the answer was expunged meanwhile by another client.
        return {
            int(uid): bytes(data[b"BODY[]"])
            for uid, data in found.items()
            if data.get(b"BODY[]") is not None
        }

    def settle(self, uids: Sequence[int], mode: str, processed_folder: str) -> None:
        """Mark stored messages done: move them to ``processed_folder``, or flag them."""
        if not uids:
            return
        if mode == FLAG:
            self.client.add_flags(list(uids), [STORED_FLAG], silent=True)
        elif self.has("MOVE"):
            self.client.move(list(uids), processed_folder)
        else:
            self._copy_and_expunge(list(uids), processed_folder)

    def _copy_and_expunge(self, uids: list[int], processed_folder: str) -> None:
        # A crash after COPY leaves a second copy in the processed folder on the next pass;
        # never a second inbound row (the store finds the bytes by their SHA-256).
        self.client.copy(uids, processed_folder)
        self.client.add_flags(uids, [b"\\Deleted"], silent=True)
        if self.has("UIDPLUS"):
            self.client.uid_expunge(uids)
        else:
            # Without UIDPLUS, EXPUNGE also removes whatever else is marked \Deleted here.
            self.client.expunge()

    # --- IDLE (RFC 2177) ----------------------------------------------------------------------
    def idle_start(self) -> bool:
        """Enter IDLE; True when the server already announced something with its "+" line.

        A server reports changes it has not told yet right after "+ idling", often in the same
        packet. imaplib's buffered reader then holds them, and ``idle_check``, which waits on
        the socket, would not see them until the next rescan.
        """
        self.client.idle()
        return self._buffered()

    def _buffered(self) -> bool:
        # imaplib keeps its reader in ``_imap.file``; imapclient offers no public way to ask.
        reader = getattr(getattr(self.client, "_imap", None), "file", None)
        peek = getattr(reader, "peek", None)
        if peek is None:
            return False  # cannot tell: the rescan is the safety net
        sock = self.client.socket()
        sock.setblocking(False)  # peek reads the socket only when nothing is buffered
        try:
            return bool(peek(1))
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        finally:
            sock.settimeout(READ_TIMEOUT)

    def idle_wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s in IDLE; True when the folder may have new mail.

        Raises ConnectionLost on BYE. A wait that ends early with nothing to read means the
        socket was readable but no line came (the server closed it): True, so the caller leaves
        IDLE, which then raises for a dead connection.
        """
        started = time.monotonic()
        responses = self.client.idle_check(timeout)
        for response in responses:
            if response and response[0] == b"BYE":
                words = b" ".join(part for part in response[1:] if isinstance(part, bytes))
                said = words.decode(errors="replace")
                raise ConnectionLost(f"{self.target} closed the connection: {said}")
        if any(len(response) > 1 and response[1] == b"EXISTS" for response in responses):
            return True
        return not responses and time.monotonic() - started < timeout / 2

    def idle_stop(self) -> None:
        self.client.idle_done()

    def close(self) -> None:
        """LOGOUT, or just drop the connection when it is already broken."""
        try:
            self.client.socket().settimeout(CLOSE_TIMEOUT)
            self.client.logout()
        except (_IMAP_ERROR, OSError):
            with contextlib.suppress(_IMAP_ERROR, OSError):  # already gone: nothing to release
                self.client.shutdown()


def open_mailbox(target: ImapTarget, password: str, *, readonly: bool = False) -> Mailbox:
    """Connect, secure, log in and select the intake folder (EXAMINE when ``readonly``)."""
    client = _connect(target)
    try:
        security = _secure(client, target)
        _login(client, target, password)
        mailbox = Mailbox(client, target, security, readonly)
        mailbox.select()
    except BaseException:
        Mailbox(client, target, "", readonly).close()
        raise
    return mailbox


def _connect(target: ImapTarget) -> Any:
    try:
        return IMAPClient(
            target.host,
            port=target.port,
            ssl=target.scheme == "imaps",
            ssl_context=ssl.create_default_context() if target.scheme == "imaps" else None,
            timeout=SocketTimeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
        )
    except ssl.SSLCertVerificationError as exc:
        raise _untrusted(target, exc) from exc
    except (OSError, _IMAP_ERROR) as exc:
        raise ImapError(f"cannot connect to {target}: {describe(exc)}") from exc


def _secure(client: Any, target: ImapTarget) -> str:
    """How the connection is protected: "TLS", "STARTTLS", or "plain" (loopback only)."""
    if target.scheme == "imaps":
        return "TLS"
    if client.has_capability("STARTTLS"):
        try:
            client.starttls(ssl.create_default_context())
        except ssl.SSLCertVerificationError as exc:
            raise _untrusted(target, exc) from exc
        return "STARTTLS"
    if target.loopback:
        return "plain"
    raise ImapFatalError(
        f"{target} offers no STARTTLS, and mailbot sends a password unencrypted only to a "
        "loopback address: use imaps:// or enable STARTTLS on the server"
    )


def _untrusted(target: ImapTarget, exc: ssl.SSLCertVerificationError) -> ImapFatalError:
    return ImapFatalError(
        f"the TLS certificate of {target.host} is not trusted: {exc.verify_message or exc}"
    )


def _login(client: Any, target: ImapTarget, password: str) -> None:
    try:
        client.login(target.username, password)
    except LoginError as exc:
        reason = describe(exc)
        if TRY_LATER_CODE in reason.upper():
            raise ImapError(f"login to {target} failed for now: {reason}") from exc
        raise ImapFatalError(
            f"login to {target} refused: {reason} (check the user in MAILBOT_IMAP_URL and "
            "MAILBOT_IMAP_PASSWORD or MAILBOT_IMAP_PASSWORD_FILE)"
        ) from exc


__all__ = [
    "FLAG",
    "MOVE",
    "STORED_FLAG",
    "ConnectionLost",
    "FolderState",
    "ImapError",
    "ImapFatalError",
    "ImapTarget",
    "Mailbox",
    "describe",
    "open_mailbox",
    "parse_imap_url",
    "read_password",
]
