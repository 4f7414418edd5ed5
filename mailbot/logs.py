"""Logging for long-running processes: level and format from the settings, times with their zone,
and the ids a line is about.

``MAILBOT_LOG_FORMAT=text`` (default) writes one line per record::

    2026-12-07T03:33:33.123+09:00 INFO mailbot.worker: processed 1 message(s) [inbound_id=42]

``json`` writes one JSON object per line (``time``, ``level``, ``logger``, ``message``, and
``receipt_no``, ``inbound_id``, ``outbox_id`` where they apply; a traceback as ``exception``),
for a log shipper. Every record becomes exactly one line: tracebacks and Python warnings too.

The ids come from a context variable, not from each log call: code that handles one message,
notice or application wraps that work in :func:`log_context` (or adds to it with
:func:`add_log_fields`), and every record logged meanwhile, by any module and in threads started
with ``asyncio.to_thread`` (which copy the context), carries them.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from types import MappingProxyType
from typing import IO, Any
from zoneinfo import ZoneInfo

# The ids a record may carry, in the order the text format shows them.
CONTEXT_FIELDS = ("receipt_no", "inbound_id", "outbox_id")
# Chatty libraries: their warnings are kept, their INFO is not (aiosmtpd logs every command,
# APScheduler every sweep) unless the level asked for is DEBUG.
QUIET_LOGGERS = ("mail.log", "apscheduler")

_NONE: Mapping[str, object] = MappingProxyType({})
_fields: ContextVar[Mapping[str, object]] = ContextVar("mailbot_log_fields", default=_NONE)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Records logged inside carry ``fields`` (None values are left out)."""
    token = _fields.set({**_fields.get(), **_present(fields)})
    try:
        yield
    finally:
        _fields.reset(token)


def add_log_fields(**fields: object) -> None:
    """Add ``fields`` to the current context until the enclosing :func:`log_context` ends
    (e.g. the receipt number, once an application has one)."""
    _fields.set({**_fields.get(), **_present(fields)})


def _present(fields: Mapping[str, object]) -> dict[str, object]:
    return {key: value for key, value in fields.items() if value is not None}


class ContextFilter(logging.Filter):
    """Copies the current context's ids onto each record (as attributes of those names)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _fields.get().items():
            if not hasattr(record, key):  # an explicit extra= wins
                setattr(record, key, value)
        return True


class _ZonedFormatter(logging.Formatter):
    def __init__(self, zone: ZoneInfo) -> None:
        super().__init__()
        self.zone = zone

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, self.zone)
        return moment.isoformat(timespec="milliseconds")

    @staticmethod
    def context_of(record: logging.LogRecord) -> dict[str, object]:
        return {key: getattr(record, key) for key in CONTEXT_FIELDS if hasattr(record, key)}


class TextFormatter(_ZonedFormatter):
    """``TIME LEVEL LOGGER: MESSAGE [ids]``; a traceback follows on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.formatTime(record)} {record.levelname} {record.name}: {record.getMessage()}"
        context = self.context_of(record)
        if context:
            line += " [" + " ".join(f"{key}={value}" for key, value in context.items()) + "]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(_ZonedFormatter):
    """One JSON object per line; non-ASCII text kept as it is (Japanese stays readable)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self.context_of(record),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def configure_logging(
    level: str, fmt: str, zone: ZoneInfo, *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every record of the process to ``stream`` (stderr) in ``fmt`` at ``level``.

    Replaces handlers set up before (a second call, e.g. in tests, does not double lines).
    Returns the handler.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(zone) if fmt == "json" else TextFormatter(zone))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    # Python warnings would otherwise be printed as two bare lines, outside any format.
    logging.captureWarnings(True)
    return handler
