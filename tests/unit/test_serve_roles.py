"""``serve --only``: which roles a process runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbot.app import parse_roles, roles_to_run
from mailbot.config import SERVE_ROLES, Settings, load_settings
from mailbot.errors import ConfigError


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(home=tmp_path)


@pytest.mark.parametrize(
    ("value", "roles"),
    [
        ("smtp", ("smtp",)),
        ("worker,outbox", ("worker", "outbox")),
        ("outbox, worker", ("worker", "outbox")),  # spaces allowed, the order is mailbot's
        ("web,web,smtp,", ("smtp", "web")),  # repeats and a trailing comma are harmless
        ("imap,scheduler,web,outbox,worker,smtp", SERVE_ROLES),
    ],
)
def test_roles_are_parsed(value: str, roles: tuple[str, ...]) -> None:
    assert parse_roles(value) == roles


@pytest.mark.parametrize("value", ["mailer", "smtp,mailer", "SMTP", "smtp;worker"])
def test_an_unknown_role_names_itself_and_every_valid_role(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_roles(value)
    message = str(caught.value)
    assert "unknown role" in message
    assert "smtp, worker, outbox, scheduler, web, imap" in message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_no_role_at_all_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="names no role"):
        parse_roles(value)


def test_by_default_every_role_runs_and_imap_only_when_configured(tmp_path: Path) -> None:
    without = load_settings(home=tmp_path)
    assert roles_to_run(None, without) == ("smtp", "worker", "outbox", "scheduler", "web")
    configured = load_settings(home=tmp_path, imap_url="imaps://apply@imap.example.jp/INBOX")
    assert roles_to_run(None, configured) == SERVE_ROLES


def test_the_named_roles_run(settings: Settings) -> None:
    assert roles_to_run(("worker", "outbox"), settings) == ("worker", "outbox")


def test_imap_without_a_mailbox_is_refused(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="MAILBOT_IMAP_URL"):
        roles_to_run(("smtp", "imap"), settings)
