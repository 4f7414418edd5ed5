"""``mailbot config show``: every setting's effective value and where it came from.

The sources are the ones :class:`mailbot.config.Settings` reads, strongest first: a
``MAILBOT_*`` environment variable, the TOML file (``MAILBOT_CONFIG``, ``./mailbot.toml`` or
``/etc/mailbot/mailbot.toml``), a value derived from another setting (the database and the
Maildir under ``home``, the intake address from ``domain``), the default. Secrets are never
shown: a password or key reads ``(set, hidden)``, and a password inside a URL is replaced by
``***``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from mailbot.config import ENV_PREFIX, SECRET_SETTINGS, Settings, config_file

# Filled in from other settings when not set (Settings._derived).
DERIVED = {
    "database_url": "home",
    "intake_address": "domain",
    "relay": "home",
}
HIDDEN = "(set, hidden)"
UNSET = "(unset)"


@dataclass(frozen=True)
class EffectiveSetting:
    name: str
    variable: str
    value: str
    source: str

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "variable": self.variable,
            "value": self.value,
            "source": self.source,
        }


def effective_settings(
    settings: Settings, environ: Mapping[str, str] | None = None, file: Path | None = None
) -> list[EffectiveSetting]:
    """Each setting of ``settings`` in declaration order. ``environ`` defaults to the
    process's environment, ``file`` to the file the settings were read from."""
    env = {key.upper(): value for key, value in (environ or os.environ).items()}
    path = file if file is not None else config_file()
    from_file = _read_toml(path) if path is not None else {}
    rows = []
    for name in Settings.model_fields:
        variable = ENV_PREFIX + name.upper()
        if variable in env:
            source = "environment"
        elif name in from_file:
            source = f"file {path}"
        elif name in DERIVED:
            source = f"derived from {DERIVED[name]}"
        else:
            source = "default"
        value = _shown(name, getattr(settings, name))
        rows.append(EffectiveSetting(name, variable, value, source))
    return rows


def format_settings(rows: list[EffectiveSetting]) -> str:
    width = max(len(row.variable) for row in rows)
    return "\n".join(f"{row.variable:<{width}}  {row.value}  ({row.source})" for row in rows)


def _read_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _shown(name: str, value: object) -> str:
    if value is None or value == "":
        return UNSET
    if name in SECRET_SETTINGS or isinstance(value, SecretStr):
        return HIDDEN
    text = str(value)
    return _without_password(text) if "://" in text else text


def _without_password(url: str) -> str:
    """``smtp://user:secret@host:587`` → ``smtp://user:***@host:587``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))
