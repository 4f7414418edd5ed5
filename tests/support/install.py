"""mailbot installed by ``deploy/install.sh``, once per test session, into a temporary folder.

The install runs for real (as root: it creates the ``mailbot`` user, a venv made with the
system Python, the configuration, the home owned by ``mailbot``, the schema, the units); only
its folders are moved, through the variables the script documents. The folder is made with
``tempfile`` rather than pytest's ``tmp_path``, whose parent is private to root: the
``mailbot`` user must be able to reach the venv and its home, as it can under /opt and /var.
"""

from __future__ import annotations

import atexit
import fcntl
import functools
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALL_SH = REPO / "deploy" / "install.sh"
SERVICE_USER = "mailbot"
SYSTEM_PYTHON = Path("/usr/bin/python3")
INSTALL_TIMEOUT = 600
LOCK_FILE = Path(tempfile.gettempdir()) / "mailbot-install.lock"


def install_available() -> str | None:
    """None when deploy/install.sh can run here, else why not."""
    if os.geteuid() != 0:
        return "deploy/install.sh needs root (it creates the mailbot user)"
    for tool in ("runuser", "useradd", "groupadd"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} is missing (apt-get install python3 python3-venv)"
    return None


@dataclass(frozen=True)
class Install:
    """Where one run of install.sh put things, and what it printed."""

    root: Path
    output: str

    @property
    def prefix(self) -> Path:
        return self.root / "opt"

    @property
    def venv(self) -> Path:
        return self.prefix / "venv"

    @property
    def mailbot(self) -> Path:
        return self.venv / "bin" / "mailbot"

    @property
    def etc_dir(self) -> Path:
        return self.root / "etc"

    @property
    def config(self) -> Path:
        return self.etc_dir / "mailbot.toml"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def unit_dir(self) -> Path:
        return self.root / "systemd"

    def environment(self) -> dict[str, str]:
        """What install.sh is given to install here instead of /opt, /etc and /var."""
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "PREFIX": str(self.prefix),
            "ETC_DIR": str(self.etc_dir),
            "STATE_DIR": str(self.state_dir),
            "UNIT_DIR": str(self.unit_dir),
            # pip's own settings of this machine (its wheel cache, its certificates)
            **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},
        }

    def run(self) -> subprocess.CompletedProcess[str]:
        # pip builds mailbot inside the checkout (build/): one install at a time on this
        # machine, whichever test session runs it.
        with open(LOCK_FILE, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return subprocess.run(
                ["sh", str(INSTALL_SH)],
                env=self.environment(),
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )


def world_readable_temp_dir(prefix: str) -> Path:
    """A fresh folder under /tmp that other users may enter (but not write)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@functools.cache
def installed() -> Install:
    """Run install.sh once for the whole session; the folder is removed when pytest exits."""
    root = world_readable_temp_dir("mailbot-install-")
    atexit.register(shutil.rmtree, root, True)
    install = Install(root=root, output="")
    done = install.run()
    if done.returncode != 0:
        raise RuntimeError(f"deploy/install.sh failed:\n{done.stdout}\n{done.stderr}")
    return Install(root=root, output=done.stdout + done.stderr)


def run_as_service_user(
    install: Install, *args: str, config: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``mailbot ARGS`` from the installed venv as the ``mailbot`` user, with no environment but
    ``MAILBOT_CONFIG`` (as a unit or Postfix's pipe would run it), from ``/``."""
    return subprocess.run(
        [
            "runuser", "-u", SERVICE_USER, "--",
            "env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8", f"MAILBOT_CONFIG={config}",
            str(install.mailbot), *args,
        ],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )  # fmt: skip


def service_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(SERVICE_USER)
    return entry.pw_uid, entry.pw_gid


__all__ = [
    "INSTALL_SH",
    "REPO",
    "SERVICE_USER",
    "Install",
    "install_available",
    "installed",
    "run_as_service_user",
    "service_ids",
    "world_readable_temp_dir",
]
