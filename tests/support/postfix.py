"""A private, real Postfix (Debian ``postfix``) for the tests of docs/operations.md's recipes.

Everything lives in one folder the caller owns: ``main.cf`` and ``master.cf``, the queue, the
data directory and the log file. Nothing under /etc/postfix or /var/spool/postfix is read or
written, no system Postfix is needed (``make system-deps`` installs the package with "No
configuration"), and the server listens on 127.0.0.1 only, on a free port.

The lines under test come from docs/operations.md: ``doc_block(NAME)`` returns the fenced block
that follows ``<!-- postfix-test: NAME -->`` there, and the tests pass those lines on with only
paths, ports and the domain changed. What this module adds is what a private instance needs and
a production one does not: its own queue and log, loopback only, the listening port, and no
chroot (Debian's ``master.cf`` chroots most services into the queue directory, which here has
none of the files a chroot needs).

``etc_mailbot``: when given, Postfix runs in a mount namespace of its own in which that folder
is bind-mounted over ``/etc/mailbot``, so the pipe's ``mailbot ingest`` reads the test's file
as the real system configuration ``/etc/mailbot/mailbot.toml``, while the rest of the machine
sees nothing (``/etc/mailbot`` is created, empty, when missing, as the mount point).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import smtplib
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.install import REPO, world_readable_temp_dir
from tests.support.smtp import free_port

OPERATIONS_DOC = REPO / "docs" / "operations.md"
PACKAGED_MASTER_CF = Path("/usr/share/postfix/master.cf.dist")
SYSTEM_CONFIG_DIR = Path("/etc/mailbot")
HOSTNAME = "postfix.test"  # never mailbot's domain: Postfix would see a mail loop
START_TIMEOUT = 20.0
COMMAND_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

_MARKER = "<!-- postfix-test: {name} -->"


def doc_block(name: str, doc: Path = OPERATIONS_DOC) -> str:
    """The fenced block right after ``<!-- postfix-test: NAME -->`` in the doc, verbatim."""
    text = doc.read_text()
    marker = _MARKER.format(name=name)
    if text.count(marker) != 1:
        raise AssertionError(f"{doc.name} must mark exactly one block {marker!r}")
    after = text.split(marker, 1)[1]
    found = re.match(r"\s*```[a-z]*\n(.*?)```", after, re.S)
    if found is None:
        raise AssertionError(f"no fenced block right after {marker!r} in {doc.name}")
    return found.group(1)


def substitute(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced; fails when ``old`` is not there (the doc changed), so a
    test never runs lines other than the documented ones without noticing."""
    if old not in text:
        raise AssertionError(f"{old!r} is not in the documented lines:\n{text}")
    return text.replace(old, new)


def postfix_available() -> str | None:
    """None when a private Postfix can run here, else why not."""
    if shutil.which("postfix") is None or not PACKAGED_MASTER_CF.exists():
        return "Postfix is not installed (make system-deps installs postfix)"
    if os.geteuid() != 0:
        return "a private Postfix needs root"
    return None


def private_master_cf(port: int) -> str:
    """Debian's packaged master.cf, listening on ``port`` and chrooting nothing."""
    lines = []
    for line in PACKAGED_MASTER_CF.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 8 and not line[0].isspace() and not line.startswith("#"):
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = str(port)
            fields[4] = "n"  # the chroot column
            line = "  ".join(fields)
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass
class Postfix:
    """One private Postfix; ``main_cf`` and ``master_cf`` are the lines under test."""

    main_cf: str
    master_cf: str = ""
    relayhost: str | None = None
    etc_mailbot: Path | None = None
    root: Path = field(default_factory=lambda: world_readable_temp_dir("postfix-"))
    port: int = field(default_factory=free_port)
    running: bool = False

    # --- where things are ---------------------------------------------------------------------
    @property
    def config_dir(self) -> Path:
        return self.root / "conf"

    @property
    def queue_dir(self) -> Path:
        return self.root / "queue"

    @property
    def log_path(self) -> Path:
        return self.root / "maillog"

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> Postfix:
        self._write_files()  # `postfix start` makes the queue's subfolders with their owners
        start = ["postfix", "-c", str(self.config_dir), "start"]
        if self.etc_mailbot is not None:
            SYSTEM_CONFIG_DIR.mkdir(mode=0o755, exist_ok=True)
            # The master and every process it starts inherit the namespace and its mount.
            start = [
                "unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$1" /etc/mailbot && shift && exec "$@"',
                "sh", str(self.etc_mailbot), *start,
            ]  # fmt: skip
        done = subprocess.run(start, env=self._env(), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"postfix start failed: {done.stdout}{done.stderr}\n{self.log()}")
        self.running = True
        self._wait_listening()
        return self

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        pid = self._master_pid()
        self._postfix("stop", check=False)
        deadline = time.monotonic() + 10
        while pid is not None and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- what a user of the mail server does ------------------------------------------------
    def submit(self, raw: bytes, *, mail_from: str, rcpt_to: list[str] | str) -> dict[str, Any]:
        """Hand Postfix a message over SMTP; raises smtplib's errors when it refuses."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            return client.sendmail(mail_from, rcpt_to, raw)

    def flush(self) -> None:
        """``postqueue -f``: try every deferred message now, as an operator would."""
        self._run("postqueue", "-c", str(self.config_dir), "-f")

    def queue(self) -> list[dict[str, Any]]:
        """``postqueue -j``: one dict per queued message (recipients with delay reasons)."""
        done = self._run("postqueue", "-c", str(self.config_dir), "-j")
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = 30.0) -> list[str]:
        """The log lines matching ``pattern`` once there are ``count`` of them."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.log().splitlines() if regex.search(line)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{count} log line(s) matching {pattern!r} not seen within {timeout} s:\n"
                    + self.log()
                )
            time.sleep(0.1)

    # --- configuration --------------------------------------------------------------------
    def _write_files(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.queue_dir.mkdir(exist_ok=True)
        data = self.root / "data"
        data.mkdir(exist_ok=True)
        postfix_user = _ids("postfix")
        os.chown(data, *postfix_user)  # else master.lock cannot be made
        (self.config_dir / "main.cf").write_text(self._main_cf())
        (self.config_dir / "master.cf").write_text(
            private_master_cf(self.port) + "\n# the lines under test\n" + self.master_cf
        )

    def _main_cf(self) -> str:
        root = self.root
        outside = (
            f"relayhost = {self.relayhost}"
            if self.relayhost
            # no DNS here: mail to other domains fails at once instead of waiting in the queue
            else "default_transport = error:outside mail is not delivered in this test"
        )
        return f"""# a private Postfix for a test (tests/support/postfix.py)
compatibility_level = 3.6
queue_directory = {root / "queue"}
data_directory = {root / "data"}
maillog_file = {self.log_path}
maillog_file_prefixes = {root}
myhostname = {HOSTNAME}
mydomain = {HOSTNAME}
mydestination =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
{outside}
# the lines under test
{self.main_cf}"""

    # --- helpers ----------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        # Postfix cleans its environment anyway; start it without the tests' MAILBOT_* too.
        return {"PATH": COMMAND_PATH, "LANG": "C.UTF-8"}

    def _postfix(self, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run("postfix", "-c", str(self.config_dir), command, check=check)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(args, env=self._env(), capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}\n{self.log()}")
        return done

    def _master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as client:
                    client.noop()
                return
            except (OSError, smtplib.SMTPException):
                time.sleep(0.1)
        raise RuntimeError(f"Postfix did not listen on port {self.port}:\n{self.log()}")


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["HOSTNAME", "Postfix", "doc_block", "postfix_available", "substitute"]
