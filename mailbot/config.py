"""Settings: one object, built once by the entry point and passed down (no globals).

Sources, strongest first: keyword arguments (tests), ``MAILBOT_*`` environment variables, one
TOML file, defaults. The file is ``MAILBOT_CONFIG`` when set, else ``./mailbot.toml`` when
present, else the system file ``/etc/mailbot/mailbot.toml`` when present: so a mail server's
pipe, which runs ``mailbot ingest`` with no environment and in its own working directory, reads
the same configuration as the service. Relative paths in a file resolve against the file's
folder, never the working directory. Defaults that depend on other settings (``DATABASE_URL``
on ``HOME``, ``INTAKE_ADDRESS`` on ``DOMAIN``) are filled in after validation so that setting
``HOME`` alone moves everything.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from datetime import time
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, Literal
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
from mailbot.file_access import process_user

ENV_PREFIX = "MAILBOT_"
# The key file of earlier versions, imported into the database once (mailbot.keys).
SECRET_KEY_FILE = "secret_key"
SYSTEM_CONFIG = Path("/etc/mailbot/mailbot.toml")
LOCAL_CONFIG = Path("mailbot.toml")
# A key an attacker cannot guess by brute force: 32 characters of token_urlsafe are 192 bits.
MIN_SECRET_KEY_LENGTH = 32
# Settings whose value is a file or folder: relative ones in a TOML file are taken from there.
PATH_SETTINGS = ("home", "imap_password_file", "smtp_tls_cert", "smtp_tls_key")
SECRET_SETTINGS = ("secret_key", "imap_password")
SERVE_ROLES = ("smtp", "worker", "outbox", "scheduler", "web", "imap")


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


IPNetwork = IPv4Network | IPv6Network


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """``"127.0.0.1, 10.0.0.0/8 2001:db8::/32"`` → networks (a bare address is a network of
    one); separated by commas or blanks."""
    networks = []
    for item in value.replace(",", " ").split():
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{item!r} is not an IP address or network (write e.g. 127.0.0.1, "
                "192.0.2.0/24 or 2001:db8::/32, separated by commas)"
            ) from None
    return tuple(networks)


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
    # All outsiders together, per clock hour: a flood of forged senders cannot make a mail cannon
    outsider_replies_per_hour: int = Field(default=60, ge=0)
    sender_name: str = "NACCSセンター (mailbot)"
    organisation: str = "輸出入・港湾関連情報処理センター株式会社（NACCSセンター）"
    subject_prefix: str = "【NSS】"
    outbox_max_attempts: int | None = Field(default=None, ge=1)  # unset: give-up hours decide
    outbox_backoff_seconds: float = Field(default=30.0, gt=0)
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    # Review by reply
    review_token_days: float = Field(default=14.0, gt=0)
    link_token_days: float = Field(default=90.0, gt=0)
    approvals_required: int = Field(default=1, ge=1, le=5)
    trusted_authserv_id: str = ""
    # A staff reply whose envelope sender is another mailbox than its From is refused
    # (mailbot.return_path); false only where staff mail leaves with a rewritten return path.
    review_envelope_check: bool = True
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
    # STARTTLS on the SMTP gateway (offered when both files are set; AUTH is never offered)
    smtp_tls_cert: Path | None = None
    smtp_tls_key: Path | None = None
    smtp_require_tls: bool = False
    # The gateway's limits (bounded memory): beyond them 421 at connect or 451 at DATA, so the
    # sending server retries later. A message in DATA is held in memory until it is stored.
    smtp_max_sessions: int = Field(default=100, ge=1, le=10_000)
    smtp_max_sessions_per_client: int = Field(default=20, ge=1, le=10_000)
    smtp_max_data: int = Field(default=8, ge=1, le=1_000)
    smtp_max_data_per_client: int = Field(default=2, ge=1, le=1_000)
    smtp_data_wait_seconds: float = Field(default=30.0, ge=0, le=110)
    # SMTP clients whose Authentication-Results count (addresses or networks, e.g. the MTA in
    # front); they are also exempt from the per-client limits.
    trusted_relays: str = ""
    # --- Operating it (logs, health, retention, outbox give-up; docs/operations.md) ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # A waiting message or due notice older than this makes /healthz answer 503 (stuck).
    health_stuck_seconds: float = Field(default=600.0, gt=0)
    # A refused IMAP login is tried again this long after (not sooner: no account lock-out).
    imap_refused_retry_seconds: float = Field(default=900.0, gt=0)
    # Raw bytes of processed mail are removed after these many days (outsiders' sooner).
    retain_raw_days: int = Field(default=90, ge=1)
    retain_outsider_days: int = Field(default=7, ge=1)
    retention_time: time = time(3, 30)  # the daily purge, in MAILBOT_TIMEZONE
    # A notice is retried at most this far apart, for this long after it was queued.
    outbox_max_backoff_seconds: float = Field(default=3600.0, gt=0, le=3600)
    outbox_give_up_hours: float = Field(default=120.0, gt=0)
    # How long the office page link in the contract reply opens the page (at most
    # link_token_days, which bounds how long a retired key verifies links).
    office_link_days: float = Field(default=14.0, gt=0)
    # --- The staff console (/staff, docs/console.md) ---
    # A login link or code works once, for this long (a mail scanner's GET spends nothing).
    console_link_minutes: float = Field(default=10.0, gt=0, le=60)
    # A session ends after this long without a request, and this long after login whatever.
    console_idle_minutes: float = Field(default=30.0, gt=0)
    console_session_hours: float = Field(default=12.0, gt=0, le=24 * 7)
    # Per address per clock hour: links asked for, and codes typed (right or wrong).
    console_link_requests_per_hour: int = Field(default=5, ge=1)
    console_code_tries_per_hour: int = Field(default=10, ge=1)
    # Under review with this few business days (or fewer) left before the start date: at risk.
    console_risk_business_days: int = Field(default=2, ge=0, le=60)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = config_file()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(_TomlFile(settings_cls, toml_file))
        return tuple(sources)

    @field_validator("secret_key")
    @classmethod
    def _strong_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                f"must be at least {MIN_SECRET_KEY_LENGTH} characters (a shorter key can be "
                "guessed, and with it every link); unset it to use the keys in the database, "
                "or make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return value

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

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("apply_time", "reminder_time", "retention_time")
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

    @field_validator("trusted_relays", mode="before")
    @classmethod
    def _relay_networks(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):  # a TOML list
            value = ", ".join(str(item) for item in value)
        if isinstance(value, str):
            parse_networks(value)
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
        if (self.smtp_tls_cert is None) != (self.smtp_tls_key is None):
            raise ValueError(
                "set both MAILBOT_SMTP_TLS_CERT and MAILBOT_SMTP_TLS_KEY to offer STARTTLS"
            )
        if self.smtp_max_data_per_client > self.smtp_max_data:
            raise ValueError(
                "MAILBOT_SMTP_MAX_DATA_PER_CLIENT must not exceed MAILBOT_SMTP_MAX_DATA "
                f"({self.smtp_max_data_per_client} > {self.smtp_max_data})"
            )
        if self.smtp_max_sessions_per_client > self.smtp_max_sessions:
            raise ValueError(
                "MAILBOT_SMTP_MAX_SESSIONS_PER_CLIENT must not exceed MAILBOT_SMTP_MAX_SESSIONS "
                f"({self.smtp_max_sessions_per_client} > {self.smtp_max_sessions})"
            )
        if self.smtp_require_tls and self.smtp_tls_cert is None:
            raise ValueError(
                "MAILBOT_SMTP_REQUIRE_TLS needs MAILBOT_SMTP_TLS_CERT and MAILBOT_SMTP_TLS_KEY"
            )
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

    @property
    def trusted_relay_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.trusted_relays)


def config_file() -> Path | None:
    """The TOML file settings are read from: ``MAILBOT_CONFIG``, ``./mailbot.toml`` or the
    system file, the first that applies; None when there is none (defaults and environment)."""
    named = os.environ.get("MAILBOT_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file() or not os.access(path, os.R_OK):
            raise ConfigError(
                f"MAILBOT_CONFIG names {named!r}, which is not a file {process_user()} can read"
            )
        return path.resolve()
    for candidate in (LOCAL_CONFIG, SYSTEM_CONFIG):
        if _is_file(candidate):
            if not os.access(candidate, os.R_OK):
                raise ConfigError(
                    f"{candidate.resolve()} is not readable by {process_user()}: give that user "
                    "read access (the install makes it group mailbot, mode 0640)"
                )
            return candidate.resolve()
    return None


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file; a working directory this user may not look into (a command
    run with ``runuser -u mailbot`` from /root) simply has no ./mailbot.toml."""
    try:
        return path.is_file()
    except PermissionError:
        return False


class _TomlFile(TomlConfigSettingsSource):
    """A TOML settings file whose relative paths mean "next to this file", and whose every
    name must be a setting: a misspelt one would otherwise be ignored without a word."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        self._folder = path.parent
        self._known = set(settings_cls.model_fields)
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        data = super()._read_file(file_path)
        for name in data:
            if name not in self._known:
                close = difflib.get_close_matches(name, self._known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"{file_path}: {name!r} is not a setting{hint}")
        return resolve_relative_paths(data, self._folder)


def resolve_relative_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``data`` with relative paths (path settings, a Maildir relay, a SQLite file) made
    absolute against ``folder``."""
    resolved = dict(data)
    for name in PATH_SETTINGS:
        value = resolved.get(name)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            resolved[name] = str(folder / value)
    relay = resolved.get("relay")
    if isinstance(relay, str) and relay and "://" not in relay:
        raw = relay.removeprefix("maildir:")
        if not Path(raw).expanduser().is_absolute():
            resolved["relay"] = f"maildir:{folder / raw}"
    url = resolved.get("database_url")
    if isinstance(url, str) and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        file_part = url.removeprefix("sqlite:///")
        if file_part and not file_part.startswith(":memory:"):
            resolved["database_url"] = f"sqlite:///{folder / file_part}"
    return resolved


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
        if not location:
            lines.append(message)
        elif location[0] in SECRET_SETTINGS:  # never echo a secret, not even a wrong one
            lines.append(f"{name}: {message}")
        else:
            lines.append(f"{name}: {message} (got {error.get('input')!r})")
    return "bad setting: " + "; ".join(lines)
