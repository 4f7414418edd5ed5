"""A private Dovecot (Debian ``dovecot-imapd``) for the IMAP tests and the IMAP bench.

Everything lives under one directory the caller owns (``tmp_path``): the generated config, the
passwd-file, the Maildir, the runtime sockets and the log. Nothing under /etc or /var is read
or written, and the server listens on 127.0.0.1 only, on a port the kernel picked.

Dovecot never lets a mail process run as root, so the mailbox belongs to ``nobody``; the mail
processes chroot into ``ROOT/mail`` (as root, before dropping privileges), which is why the
Maildir can sit under pytest's private (mode 0700) temporary directory.

``capabilities`` overrides what the server advertises after login (``imap_capability``): leave
out ``IDLE`` for the poll path, ``MOVE`` for copy + delete + expunge. Dovecot still accepts the
commands; the client decides from the advertised list, as it must with a real server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from imapclient import IMAPClient

from tests.support.needs import require
from tests.support.smtp import free_port

USER = "mailbot"
PASSWORD = "imap-secret"
START_TIMEOUT = 10.0
# Unix socket paths are limited to 108 bytes; Dovecot's longest socket name is ~24.
MAX_BASE_DIR = 80
APPEND_CHUNK = 200  # messages per MULTIAPPEND: keeps one command well below any size limit


def dovecot_available() -> str | None:
    """None when a private Dovecot can run here, else why not."""
    if shutil.which("dovecot") is None or shutil.which("doveadm") is None:
        return "Dovecot is not installed (make system-deps installs dovecot-imapd)"
    if os.geteuid() != 0:
        return "a private Dovecot needs root (it chroots its mail processes)"
    return None


def _mail_owner() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return 65534, 65534
    return entry.pw_uid, entry.pw_gid


@dataclass
class Dovecot:
    root: Path
    capabilities: str | None = None
    tls: bool = False
    port: int = field(default_factory=free_port)
    tls_port: int = 0
    user: str = USER
    password: str = PASSWORD
    process: subprocess.Popen[bytes] | None = None
    _short_base: Path | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError("Dovecot is already running")
        if not self.config_path.exists():
            self._write_files()
        # Its own session: stop() signals the whole group, so the per-connection imap
        # processes die with the master, as they do when a real server restarts.
        self.process = subprocess.Popen(
            ["dovecot", "-c", str(self.config_path), "-F"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._wait_listening()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        if process.stderr is not None:
            process.stderr.close()
        # The master removes its pid file on the way out; a leftover one would make the next
        # start refuse ("already running").
        (self.base_dir / "master.pid").unlink(missing_ok=True)

    def restart(self, pause: float = 0.0) -> None:
        """Stop (every open connection gets ``BYE``), wait ``pause`` seconds, start again."""
        self.stop()
        time.sleep(pause)
        self.start()

    def close(self) -> None:
        self.stop()
        if self._short_base is not None:
            shutil.rmtree(self._short_base, ignore_errors=True)

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"Dovecot exited at start: {error}\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"Dovecot did not listen on port {self.port}:\n{self.log()}")

    # --- where things are ---------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def mail_root(self) -> Path:
        return self.root / "mail"

    @property
    def maildir(self) -> Path:
        return self.mail_root / self.user / "Maildir"

    @property
    def base_dir(self) -> Path:
        if self._short_base is not None:
            return self._short_base
        base = self.root / "run"
        if len(str(base)) > MAX_BASE_DIR:
            self._short_base = Path(tempfile.mkdtemp(prefix="dovecot-"))
            return self._short_base
        return base

    @property
    def cert_path(self) -> Path:
        return self.root / "cert.pem"

    def url(self, folder: str = "INBOX", *, scheme: str = "imap") -> str:
        port = self.tls_port if scheme == "imaps" else self.port
        return f"{scheme}://{self.user}@127.0.0.1:{port}/{folder}"

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- configuration ------------------------------------------------------------------------
    def _write_files(self) -> None:
        (self.root / "state").mkdir(parents=True, exist_ok=True)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        home = self.mail_root / self.user
        home.mkdir(parents=True, exist_ok=True)
        uid, gid = _mail_owner()
        os.chown(home, uid, gid)
        passwd = self.root / "passwd"
        passwd.write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        passwd.chmod(0o600)
        if self.tls:
            self._make_certificate()
            self.tls_port = self.tls_port or free_port()
        self.config_path.write_text(self._config(uid, gid))

    def set_password(self, password: str) -> None:
        """Change the user's password on the server (read at the next login, no restart):
        the password mailbot has is then refused until it is set back."""
        self.password = password
        passwd = self.root / "passwd"
        passwd.write_text(f"{self.user}:{{PLAIN}}{password}\n")
        passwd.chmod(0o600)

    def _make_certificate(self) -> None:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", str(self.root / "key.pem"), "-out", str(self.cert_path),
                "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip

    def _config(self, uid: int, gid: int) -> str:
        root = self.root
        if self.tls:
            ssl = f"ssl = yes\nssl_cert = <{self.cert_path}\nssl_key = <{root / 'key.pem'}\n"
            imaps = f"address = 127.0.0.1\n    port = {self.tls_port}"
        else:
            ssl, imaps = "ssl = no\n", "port = 0"
        capability = (
            f"protocol imap {{\n  imap_capability = {self.capabilities}\n}}\n"
            if self.capabilities is not None
            else ""
        )
        return f"""# generated by tests/support/dovecot.py
base_dir = {self.base_dir}
state_dir = {root / "state"}
log_path = {root / "dovecot.log"}
protocols = imap
listen = 127.0.0.1
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:~/Maildir
# a throw-away mailbox: no need to wait for the disk
mail_fsync = never
valid_chroot_dirs = {self.mail_root}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root / "passwd"}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.mail_root}/./%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    {imaps}
  }}
}}
# the auth process reads the passwd-file under the caller's private temporary directory
service auth {{
  user = root
}}
# no growing delay after failed logins (anvil's auth penalty): tests fail logins on purpose
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{capability}"""

    # --- the mailbox, as a mail user agent sees it ----------------------------------------------
    @contextmanager
    def client(self, folder: str | None = "INBOX") -> Iterator[IMAPClient]:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=30)
        try:
            client.login(self.user, self.password)
            if folder is not None:
                client.select_folder(folder)
            yield client
        finally:
            client.logout()

    def append(self, raw: bytes, folder: str = "INBOX") -> int:
        """APPEND one message; return its UID."""
        with self.client(None) as client:
            response = client.append(folder, raw)
        # b'[APPENDUID <uidvalidity> <uid>] Append completed.'
        return int(response.split(b"]")[0].split()[-1])

    def append_many(self, messages: Iterable[bytes], folder: str = "INBOX") -> None:
        batch: list[bytes] = []
        with self.client(None) as client:
            if not client.has_capability("MULTIAPPEND"):  # hidden by ``capabilities``
                for raw in messages:
                    client.append(folder, raw)
                return
            for raw in messages:
                batch.append(raw)
                if len(batch) == APPEND_CHUNK:
                    client.multiappend(folder, batch)
                    batch = []
            if batch:
                client.multiappend(folder, batch)

    def messages(self, folder: str = "INBOX") -> dict[int, bytes]:
        """UID → raw bytes of every message in ``folder`` (without setting \\Seen)."""
        with self.client(None) as client:
            if not client.folder_exists(folder):
                return {}
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            if not uids:
                return {}
            found = client.fetch(uids, ["BODY.PEEK[]"])
        return {uid: data[b"BODY[]"] for uid, data in found.items()}

    def count(self, folder: str = "INBOX") -> int:
        with self.client(None) as client:
            if not client.folder_exists(folder):
                return 0
            status = client.folder_status(folder, ["MESSAGES"])
        return int(status[b"MESSAGES"])

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        with self.client(folder) as client:
            uids = client.search("ALL")
            return {uid: tuple(flags) for uid, flags in client.get_flags(uids).items()}

    def remove_flag(self, flag: str, folder: str = "INBOX") -> None:
        with self.client(folder) as client:
            uids = client.search("ALL")
            if uids:
                client.remove_flags(uids, [flag], silent=True)

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.client(None) as client:
            status = client.folder_status(folder, ["UIDVALIDITY"])
        return int(status[b"UIDVALIDITY"])

    def set_uidvalidity(self, value: int, folder: str = "INBOX") -> None:
        """What a restored or rebuilt mailbox looks like to a client: a new UIDVALIDITY.

        Sessions that have the folder selected are disconnected by Dovecot ("IMAP session
        state is inconsistent, please relogin").
        """
        subprocess.run(
            [
                "doveadm", "-c", str(self.config_path), "mailbox", "update",
                "-u", self.user, "--uid-validity", str(value), folder,
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip


def start_dovecot(root: Path, *, capabilities: str | None = None, tls: bool = False) -> Dovecot:
    server = Dovecot(root=root, capabilities=capabilities, tls=tls)
    server.start()
    return server


@contextmanager
def running_dovecot(
    root: Path, *, capabilities: str | None = None, tls: bool = False
) -> Iterator[Dovecot]:
    """A private Dovecot for one test, stopped after it; where none can run, the test is
    skipped (failed under CI=true: tests.support.needs)."""
    require(dovecot_available())
    server = start_dovecot(root, capabilities=capabilities, tls=tls)
    try:
        yield server
    finally:
        server.close()


__all__ = [
    "PASSWORD",
    "USER",
    "Dovecot",
    "dovecot_available",
    "free_port",
    "running_dovecot",
    "start_dovecot",
]
