"""One exception family. Every message says what went wrong and what to do about it."""

from __future__ import annotations


class MailbotError(Exception):
    """Base of every error mailbot raises on purpose; the CLI prints it without a traceback."""

    exit_code = 1


class BilingualError(MailbotError):
    """An error a person reads in both languages: a staff member answered by mail reads
    Japanese first, then English; the CLI prints the English (``str()``)."""

    def __init__(self, *, ja: str, en: str) -> None:
        self.message_ja = ja
        self.message_en = en
        super().__init__(en)


class ConfigError(MailbotError):
    """A setting is missing or has a bad value; the message names the setting."""

    exit_code = 2


class ImportFileError(MailbotError):
    """A registry or schedule file cannot be imported; nothing was changed."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}, line {line}" if line is not None else path
        super().__init__(f"{where}: {reason} (nothing was imported; fix the file and run again)")


class NotFoundError(MailbotError):
    """The thing asked for does not exist."""


class StoreError(MailbotError):
    """An inbound message could not be stored durably; the sender must retry later."""
