"""Settings: defaults derive from HOME and DOMAIN; a bad value names the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbot.config import load_settings
from mailbot.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MAILBOT_HOME", "MAILBOT_DATABASE_URL", "MAILBOT_CONFIG", "MAILBOT_DOMAIN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_follow_home_and_domain(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "h", domain="Bot.Example.JP")
    assert settings.database_url == f"sqlite:///{tmp_path / 'h' / 'mailbot.db'}"
    assert settings.intake_address == "apply@bot.example.jp"
    assert settings.relay_target.kind == "maildir"
    assert settings.relay_target.path == tmp_path / "h" / "sent"
    assert str(settings.smtp_address) == "127.0.0.1:2525"
    assert settings.timezone == "Asia/Tokyo"
    assert settings.lead_business_days == 4


def test_environment_wins_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "custom.toml"
    config.write_text('lead_business_days = 6\ndomain = "toml.example.jp"\n')
    monkeypatch.setenv("MAILBOT_CONFIG", str(config))
    monkeypatch.setenv("MAILBOT_DOMAIN", "env.example.jp")
    settings = load_settings(home=tmp_path)
    assert settings.lead_business_days == 6
    assert settings.domain == "env.example.jp"


def test_mailbot_toml_in_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "mailbot.toml").write_text('smtp_listen = "127.0.0.1:2600"\n')
    assert load_settings(home=tmp_path).smtp_address.port == 2600


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("MAILBOT_LEAD_BUSINESS_DAYS", "soon", "MAILBOT_LEAD_BUSINESS_DAYS"),
        ("MAILBOT_TIMEZONE", "Mars/Olympus", "MAILBOT_TIMEZONE"),
        ("MAILBOT_SMTP_LISTEN", "localhost", "MAILBOT_SMTP_LISTEN"),
        ("MAILBOT_DATABASE_URL", "mysql://x", "MAILBOT_DATABASE_URL"),
        ("MAILBOT_RELAY", "ftp://relay", "MAILBOT_RELAY"),
        ("MAILBOT_BASE_URL", "example.jp", "MAILBOT_BASE_URL"),
    ],
)
def test_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(home=tmp_path)
    assert named in str(caught.value) or named.removeprefix("MAILBOT_").lower() in str(caught.value)


def test_missing_config_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAILBOT_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="MAILBOT_CONFIG"):
        load_settings()


def test_secret_key_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "h")
    first = settings.secret()
    assert len(first) >= 32
    assert settings.secret() == first
    assert ((tmp_path / "h" / "secret_key").stat().st_mode & 0o777) == 0o600
    assert "secret" not in repr(load_settings(home=tmp_path, secret_key="hunter2hunter2")).replace(
        "secret_key=SecretStr('**********')", ""
    ) or "hunter2" not in repr(load_settings(home=tmp_path, secret_key="hunter2hunter2"))


def test_smtp_relay_url_parses_credentials() -> None:
    target = load_settings(
        relay="smtp://user%40x:p%3Ass@relay.example.jp:587?starttls=1"
    ).relay_target
    assert (target.kind, target.host, target.port) == ("smtp", "relay.example.jp", 587)
    assert (target.username, target.password, target.starttls) == ("user@x", "p:ss", True)
