"""Settings: defaults derive from HOME and DOMAIN; a bad value names the setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailbot.config import Settings, load_settings
from mailbot.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MAILBOT_HOME", "MAILBOT_DATABASE_URL", "MAILBOT_CONFIG", "MAILBOT_DOMAIN"):
        monkeypatch.delenv(name, raising=False)
    # Whatever this machine has installed, these tests see no system file unless they make one.
    monkeypatch.setattr("mailbot.config.SYSTEM_CONFIG", tmp_path / "no-system-config.toml")
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


def test_secret_key_is_kept_private(tmp_path: Path) -> None:
    assert "hunter2" not in repr(load_settings(home=tmp_path, secret_key="hunter2" * 5))


def test_system_file_is_read_when_nothing_else_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = tmp_path / "etc" / "mailbot.toml"
    system.parent.mkdir()
    system.write_text('domain = "system.example.jp"\n')
    monkeypatch.setattr("mailbot.config.SYSTEM_CONFIG", system)
    assert load_settings().domain == "system.example.jp"
    # ./mailbot.toml, when present, is read instead of the system file (not merged with it).
    (tmp_path / "mailbot.toml").write_text('domain = "local.example.jp"\n')
    assert load_settings().domain == "local.example.jp"


def test_relative_paths_in_a_file_mean_next_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    config = folder / "mailbot.toml"
    config.write_text(
        'home = "state"\nrelay = "maildir:out"\ndatabase_url = "sqlite:///db/m.db"\n'
        'imap_password_file = "imap-password"\n'
        'smtp_tls_cert = "tls/cert.pem"\nsmtp_tls_key = "/abs/key.pem"\n'
    )
    monkeypatch.setenv("MAILBOT_CONFIG", str(config))
    elsewhere = tmp_path / "spool"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # as Postfix's pipe does: the working directory is not ours
    settings = load_settings()
    assert settings.home == folder / "state"
    assert settings.relay_target.path == folder / "out"
    assert settings.database_url == f"sqlite:///{folder / 'db' / 'm.db'}"
    assert settings.imap_password_file == folder / "imap-password"
    assert settings.smtp_tls_cert == folder / "tls" / "cert.pem"
    assert settings.smtp_tls_key == Path("/abs/key.pem")


def test_unreadable_config_file_names_the_file_and_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "mailbot.toml"
    config.write_text('domain = "x.example.jp"\n')
    monkeypatch.setenv("MAILBOT_CONFIG", str(config))
    monkeypatch.setattr("os.access", lambda *_args, **_kwargs: False)
    with pytest.raises(ConfigError, match=r"mailbot\.toml.*(user|uid)"):
        load_settings()


@pytest.mark.parametrize("key", ["", "a", "x" * 31])
def test_short_secret_key_stops_start_up_naming_the_setting(key: str) -> None:
    with pytest.raises(ConfigError, match=r"MAILBOT_SECRET_KEY.*at least 32") as caught:
        load_settings(secret_key=key)
    if len(key) > 1:  # the message names the setting, never the (wrong) key itself
        assert key not in str(caught.value)


def test_long_enough_secret_key_is_accepted() -> None:
    assert load_settings(secret_key="k" * 32).secret_key is not None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"smtp_tls_cert": "/c.pem"}, "both"),
        ({"smtp_tls_key": "/k.pem"}, "both"),
        ({"smtp_require_tls": True}, "MAILBOT_SMTP_REQUIRE_TLS needs"),
    ],
)
def test_tls_settings_come_in_pairs(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**values)


def test_smtp_relay_url_parses_credentials() -> None:
    target = load_settings(
        relay="smtp://user%40x:p%3Ass@relay.example.jp:587?starttls=1"
    ).relay_target
    assert (target.kind, target.host, target.port) == ("smtp", "relay.example.jp", 587)
    assert (target.username, target.password, target.starttls) == ("user@x", "p:ss", True)


def test_a_working_directory_the_user_cannot_look_into_has_no_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `runuser -u mailbot -- mailbot …` from /root: ./mailbot.toml cannot even be looked at.
    system = tmp_path / "system.toml"
    system.write_text('domain = "system.example.jp"\n')
    monkeypatch.setattr("mailbot.config.SYSTEM_CONFIG", system)
    real_is_file = Path.is_file

    def is_file(path: Path) -> bool:
        if path == Path("mailbot.toml"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_is_file(path)

    monkeypatch.setattr(Path, "is_file", is_file)
    assert load_settings().domain == "system.example.jp"


def test_every_setting_the_example_system_file_names_exists() -> None:
    # deploy/mailbot.toml shows settings, many commented out; a misspelt one would be ignored
    # silently (extra="ignore"), so the example must only name real ones.
    example = Path(__file__).resolve().parents[2] / "deploy" / "mailbot.toml"
    named = re.findall(r"^#? ?([a-z_]+) = ", example.read_text(), re.M)
    assert len(named) > 10
    assert [name for name in named if name not in Settings.model_fields] == []


def test_a_misspelt_setting_in_the_file_stops_start_up_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "mailbot.toml"
    config.write_text("retain_raw_day = 30\n")
    monkeypatch.setenv("MAILBOT_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"'retain_raw_day' is not a setting.*retain_raw_days"):
        load_settings()
