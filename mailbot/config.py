"""Settings: one object, built once by the entry point and passed down (no globals).

Sources, strongest first: keyword arguments (tests), ``MAILBOT_*`` environment variables, a TOML
file (``MAILBOT_CONFIG``, else ``./mailbot.toml`` when present), defaults. Defaults that depend
on other settings (``DATABASE_URL`` on ``HOME``, ``INTAKE_ADDRESS`` on ``DOMAIN``) are filled in
after validation so that setting ``HOME`` alone moves everything.
"""

from __future__ import annotations

import functools
import os
import secrets
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mailbot.errors import ConfigError

ENV_PREFIX = "MAILBOT_"
SECRET_KEY_FILE = "secret_key"


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RelayTarget:
    """Where outgoing mail goes: a Maildir folder, or an SMTP relay."""

    kind: str  # "maildir" | "smtp" | "smtps"
    path: Path | None = None
    host: str = ""
    port: int = 0
    username: str | None = None
    password: str | None = None
    starttls: bool = False


def parse_host_port(value: str, setting: str) -> HostPort:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{setting} must look like HOST:PORT (e.g. 127.0.0.1:2525), not {value!r}")
    return HostPort(host.strip("[]") or "127.0.0.1", int(port))


def parse_relay(value: str, home: Path) -> RelayTarget:
    """``maildir:PATH`` or a bare path → Maildir; ``smtp://[user:pass@]host:port[?starttls=1]``."""
    if value.startswith(("smtp://", "smtps://")):
        parts = urlsplit(value)
        if not parts.hostname:
            raise ValueError(f"MAILBOT_RELAY has no host: {value!r}")
        default_port = 465 if parts.scheme == "smtps" else 25
        return RelayTarget(
            kind=parts.scheme,
            host=parts.hostname,
            port=parts.port or default_port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            starttls="starttls=1" in parts.query or "starttls=true" in parts.query,
        )
    if "://" in value:
        raise ValueError(
            f"MAILBOT_RELAY must be smtp://, smtps://, maildir:PATH or a path: {value!r}"
        )
    raw = value.removeprefix("maildir:")
    path = Path(raw).expanduser()
    return RelayTarget(kind="maildir", path=path if path.is_absolute() else home / path)


class Settings(BaseSettings):
    """Every knob of mailbot. Environment variable = ``MAILBOT_`` + the upper-case field name."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    home: Path = Path("./var")
    database_url: str = ""
    domain: str = "mailbot.localhost"
    intake_address: str = ""
    smtp_listen: str = "127.0.0.1:2525"
    web_listen: str = "127.0.0.1:8080"
    relay: str = ""
    base_url: str = "http://127.0.0.1:8080"
    timezone: str = "Asia/Tokyo"
    lead_business_days: int = Field(default=4, ge=0, le=60)
    secret_key: SecretStr | None = None
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_attachments: int = Field(default=5, ge=1)
    max_attachment_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    autoreply_per_day: int = Field(default=10, ge=0)
    sender_name: str = "NACCSセンター (mailbot)"
    organisation: str = "輸出入・港湾関連情報処理センター株式会社（NACCSセンター）"
    subject_prefix: str = "【NSS】"
    outbox_max_attempts: int = Field(default=8, ge=1)
    outbox_backoff_seconds: float = Field(default=30.0, gt=0)
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    # Review by reply
    review_token_days: float = Field(default=14.0, gt=0)
    link_token_days: float = Field(default=90.0, gt=0)
    approvals_required: int = Field(default=1, ge=1, le=5)
    trusted_authserv_id: str = ""
    # Start dates and the scheduler (times are wall-clock times in MAILBOT_TIMEZONE)
    apply_time: time = time(0, 0)
    sweep_seconds: float = Field(default=60.0, gt=0)
    reminder_time: time = time(9, 0)
    scheduler_poll_seconds: float = Field(default=15.0, gt=0)
    # IMAP intake (off unless imap_url is set): imaps://user@host:993/INBOX
    imap_url: str = ""
    imap_password: SecretStr | None = None
    imap_password_file: Path | None = None
    imap_processed_folder: str = "mailbot-processed"
    imap_after_store: str = Field(default="move", pattern="^(move|flag)$")
    imap_rescan_seconds: float = Field(default=60.0, gt=0)
    imap_idle_seconds: float = Field(default=25 * 60, gt=0, le=29 * 60)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _toml_path()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Asia/Tokyo)"
            ) from exc
        return value

    @field_validator("apply_time", "reminder_time")
    @classmethod
    def _local_time(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("give the time without a zone (HH:MM); MAILBOT_TIMEZONE applies")
        return value

    @field_validator("smtp_listen", "web_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        parse_host_port(value, "the address")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError(
                "must start with sqlite:// or postgresql:// (e.g. sqlite:///var/mailbot.db)"
            )
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not value or "@" in value or " " in value:
            raise ValueError(f"must be a bare domain such as mailbot.example.jp, not {value!r}")
        return value.lower()

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, not {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        # Frozen model: fill derived defaults through object.__setattr__ once, here.
        home = self.home.expanduser().resolve()
        object.__setattr__(self, "home", home)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{home / 'mailbot.db'}")
        if not self.intake_address:
            object.__setattr__(self, "intake_address", f"apply@{self.domain}")
        if "@" not in self.intake_address:
            raise ValueError(
                f"intake_address must be an email address, not {self.intake_address!r}"
            )
        object.__setattr__(self, "intake_address", self.intake_address.lower())
        if not self.relay:
            object.__setattr__(self, "relay", f"maildir:{home / 'sent'}")
        parse_relay(self.relay, home)
        return self

    # Derived views -------------------------------------------------------------------------
    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def smtp_address(self) -> HostPort:
        return parse_host_port(self.smtp_listen, "MAILBOT_SMTP_LISTEN")

    @property
    def web_address(self) -> HostPort:
        return parse_host_port(self.web_listen, "MAILBOT_WEB_LISTEN")

    @property
    def relay_target(self) -> RelayTarget:
        return parse_relay(self.relay, self.home)

    def secret(self) -> bytes:
        """The signing key: the setting, else ``$HOME/secret_key``, created on first use (0600)."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        return _key_file(self.home / SECRET_KEY_FILE)


@functools.lru_cache(maxsize=16)
def _key_file(path: Path) -> bytes:
    """The key in ``path``, created on first use; read once per process (every notice signs
    with it, and a file read per signature was a measurable part of intake). Replacing the
    file takes effect at the next start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    key = path.read_text().strip().encode()
    if not key:  # not cached: a process that raced the creator reads it again next time
        raise ConfigError(f"{path} is empty; delete it (a new key is made) or put a key in it")
    return key


def _toml_path() -> Path | None:
    named = os.environ.get("MAILBOT_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"MAILBOT_CONFIG names {named!r}, which is not a readable file")
        return path
    local = Path("mailbot.toml")
    return local if local.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once; a bad value raises ConfigError naming the setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except ValueError as exc:  # TOML syntax errors and the like
        raise ConfigError(f"bad configuration: {exc}") from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part]
        name = ENV_PREFIX + "_".join(location).upper() if location else "settings"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"{name}: {message} (got {error.get('input')!r})" if location else message)
    return "bad setting: " + "; ".join(lines)
