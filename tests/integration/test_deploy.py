"""deploy/: install.sh run for real (into temporary folders), and the systemd units it installs.

The install is the one tests/integration/test_postfix.py runs Postfix's pipe against; here it is
checked for what an operator relies on: a service user without a login, a venv the service user
can run, made with the system Python and holding exactly the pinned versions, a configuration
only that user's group can read, a home only it can write, and a second run that repairs
ownership without touching the configuration.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.support.install import (
    REPO,
    SERVICE_USER,
    Install,
    install_available,
    installed,
    run_as_service_user,
)
from tests.support.needs import require

DEPLOY = REPO / "deploy"
UNITS = ("mailbot.service", "mailbot@.service")
# systemd-analyze security's exposure, in tenths (0 = locked down, 100 = none at all); the
# units score 1.5 today. A unit that loses its hardening goes above this and fails the test.
MAX_EXPOSURE = 20


def _require_systemd_analyze() -> None:
    missing = shutil.which("systemd-analyze") is None
    require("systemd-analyze is missing (make system-deps installs systemd)" if missing else None)


@pytest.fixture(scope="module")
def install() -> Install:
    require(install_available())
    return installed()


def owner(path: Path) -> tuple[str, str, int]:
    info = path.stat()
    return (
        pwd.getpwuid(info.st_uid).pw_name,
        grp.getgrgid(info.st_gid).gr_name,
        stat.S_IMODE(info.st_mode),
    )


def pins(lines: list[str]) -> dict[str, str]:
    """name → version of ``name==version`` lines, names normalised as pip does."""
    found = {}
    for line in lines:
        name, sep, version = line.strip().partition("==")
        if sep and not line.startswith("#"):
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def test_install_makes_a_service_user_that_cannot_log_in(install: Install) -> None:
    user = pwd.getpwnam(SERVICE_USER)
    assert user.pw_shell == "/usr/sbin/nologin"
    assert user.pw_dir == "/var/lib/mailbot"
    assert grp.getgrgid(user.pw_gid).gr_name == SERVICE_USER
    assert user.pw_uid < 1000  # a system account


def test_the_venv_is_the_system_pythons_and_the_service_user_can_run_it(install: Install) -> None:
    config = (install.venv / "pyvenv.cfg").read_text()
    assert re.search(r"^home = /usr/bin$", config, re.M), config
    ran = run_as_service_user(install, "--version", config=install.config)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("mailbot, version ")


def test_the_venv_holds_exactly_the_pinned_versions(install: Install) -> None:
    frozen = subprocess.run(
        [str(install.venv / "bin" / "python"), "-m", "pip", "freeze", "--exclude", "mailbot"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    installed_pins = pins(frozen)
    locked = pins((REPO / "requirements.lock").read_text().splitlines())
    assert installed_pins  # the runtime dependencies, at least
    assert {name: locked.get(name) for name in installed_pins} == installed_pins


def test_configuration_and_home_belong_to_the_service_user(install: Install) -> None:
    assert owner(install.etc_dir) == ("root", SERVICE_USER, 0o750)
    assert owner(install.config) == ("root", SERVICE_USER, 0o640)
    assert owner(install.state_dir) == (SERVICE_USER, SERVICE_USER, 0o750)
    # The example configuration, with this install's home.
    settings = tomllib.loads(install.config.read_text())
    example = tomllib.loads((DEPLOY / "mailbot.toml").read_text())
    assert settings == {**example, "home": str(install.state_dir)}
    assert example["home"] == "/var/lib/mailbot"
    # The schema was made by the service user, so SQLite's files are its own.
    database = install.state_dir / "mailbot.db"
    assert owner(database)[:2] == (SERVICE_USER, SERVICE_USER)
    assert not owner(database)[2] & 0o007  # nothing for other users
    upgraded = run_as_service_user(install, "db", "upgrade", config=install.config)
    assert upgraded.returncode == 0, upgraded.stderr


def test_installing_again_keeps_the_configuration_and_gives_the_home_back(
    install: Install,
) -> None:
    edited = install.config.read_text() + "# edited by the operator\n"
    install.config.write_text(edited)
    install.config.chmod(0o644)
    database = install.state_dir / "mailbot.db"
    os.chown(database, 0, 0)  # e.g. a command once run as root made it root's

    again = install.run()

    assert again.returncode == 0, again.stdout + again.stderr
    assert "made " not in again.stdout  # the venv was kept
    assert install.config.read_text() == edited
    assert owner(install.config) == ("root", SERVICE_USER, 0o640)
    assert owner(database)[:2] == (SERVICE_USER, SERVICE_USER)


def test_install_refuses_a_python_too_old_or_missing(install: Install, tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    env = {**install.environment(), "PYTHON": str(fake)}
    refused = subprocess.run(
        ["sh", str(DEPLOY / "install.sh")], env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1
    assert "mailbot needs Python 3.11 or newer" in refused.stderr


# --- the units ---------------------------------------------------------------------------------


def test_installed_units_are_the_shipped_ones_with_this_installs_paths(install: Install) -> None:
    for unit in UNITS:
        shipped = (DEPLOY / unit).read_text()
        expected = shipped.replace("/opt/mailbot", str(install.prefix)).replace(
            "/var/lib/mailbot", str(install.state_dir)
        )
        expected = expected.replace(
            "[Service]\n", f"[Service]\nEnvironment=MAILBOT_CONFIG={install.config}\n"
        )
        assert (install.unit_dir / unit).read_text() == expected


def test_units_pass_systemd_analyze_verify(install: Install) -> None:
    _require_systemd_analyze()
    # The installed units: their ExecStart names a venv that exists (the shipped ones name
    # /opt/mailbot, which verify would report missing on a machine without that install).
    names = ["mailbot.service", "mailbot@smtp.service", r"mailbot@worker\x2coutbox.service"]
    checked = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=install.unit_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_units_are_hardened(install: Install) -> None:
    _require_systemd_analyze()
    for unit in UNITS:
        checked = subprocess.run(
            [
                "systemd-analyze", "security", "--offline=yes", "--no-pager",
                f"--threshold={MAX_EXPOSURE}", unit,
            ],
            cwd=install.unit_dir,
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr


def service_lines(unit: str) -> list[str]:
    text = (DEPLOY / unit).read_text()
    section = text.split("[Service]\n", 1)[1].split("\n[", 1)[0]
    return [line for line in section.splitlines() if line and not line.startswith("#")]


def test_the_template_runs_one_role_list_with_the_same_settings() -> None:
    single, template = service_lines("mailbot.service"), service_lines("mailbot@.service")
    assert "ExecStart=/opt/mailbot/venv/bin/mailbot serve" in single
    assert "ExecStart=/opt/mailbot/venv/bin/mailbot serve --only %I" in template
    assert [line for line in single if not line.startswith("ExecStart=")] == [
        line for line in template if not line.startswith("ExecStart=")
    ]
    for required in (
        "User=mailbot",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/mailbot",
        "NoNewPrivileges=yes",
        "Restart=always",
    ):
        assert required in single
