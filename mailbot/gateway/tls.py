"""The server side of STARTTLS on the SMTP gateway: an ``ssl.SSLContext`` from
``MAILBOT_SMTP_TLS_CERT`` and ``MAILBOT_SMTP_TLS_KEY``.

The files are read once, when the gateway is built; a renewed certificate is picked up at the
next start. Anything wrong with them (missing, unreadable, not PEM, a key that is not the
certificate's, a key behind a passphrase) stops start-up with a ConfigError naming the setting
and the path: a gateway that silently offered no STARTTLS would send mail in clear.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

from mailbot.config import Settings
from mailbot.errors import ConfigError
from mailbot.file_access import process_user

CERT_SETTING = "MAILBOT_SMTP_TLS_CERT"
KEY_SETTING = "MAILBOT_SMTP_TLS_KEY"
# TLS 1.0 and 1.1 are deprecated (RFC 8996); a client that cannot do 1.2 sends in clear
# unless MAILBOT_SMTP_REQUIRE_TLS refuses it.
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def server_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The context STARTTLS uses, or None when the settings do not ask for STARTTLS."""
    cert, key = settings.smtp_tls_cert, settings.smtp_tls_key
    if cert is None or key is None:  # the settings allow both or neither
        return None
    _check_readable(CERT_SETTING, cert)
    _check_readable(KEY_SETTING, key)
    # PROTOCOL_TLS_SERVER: server side, no client certificates asked for.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase(key))
    except ssl.SSLError as exc:
        raise ConfigError(_explain(exc, cert, key)) from None
    except OSError as exc:  # replaced or removed between the check and the load
        raise ConfigError(
            f"{CERT_SETTING} / {KEY_SETTING}: cannot read {cert} or {key}: {exc.strerror}"
        ) from None
    return context


def _check_readable(setting: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise ConfigError(f"{setting}: {path} does not exist; {_expected(setting)}") from None
    except IsADirectoryError:
        raise ConfigError(f"{setting}: {path} is a folder; {_expected(setting)}") from None
    except PermissionError:  # the file, or a folder on the way to it
        raise ConfigError(
            f"{setting}: {path} is not readable by {process_user()}; give that user read "
            "access (e.g. owner root, group mailbot, mode 0640, in a folder it can enter)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None


def _expected(setting: str) -> str:
    if setting == CERT_SETTING:
        return "set it to the PEM file of the certificate and its chain (e.g. fullchain.pem)"
    return "set it to the PEM file of the certificate's private key (e.g. privkey.pem)"


def _no_passphrase(key: Path) -> Callable[[], bytes]:
    """OpenSSL would ask for a passphrase on the terminal; a service has none to type."""

    def refuse() -> bytes:
        raise ConfigError(
            f"{KEY_SETTING}: {key} is protected by a passphrase, which mailbot cannot type; "
            "give it the key without one (openssl pkey -in KEY -out NEW_KEY), readable only by "
            "mailbot's user"
        )

    return refuse


def _explain(exc: ssl.SSLError, cert: Path, key: Path) -> str:
    if exc.reason == "KEY_VALUES_MISMATCH":
        return (
            f"{KEY_SETTING}: {key} is not the private key of the certificate in "
            f"{CERT_SETTING} {cert}; name the key issued with that certificate"
        )
    if not _holds_certificate(cert):
        return f"{CERT_SETTING}: {cert} holds no PEM certificate; {_expected(CERT_SETTING)}"
    return f"{KEY_SETTING}: {key} holds no usable PEM private key; {_expected(KEY_SETTING)}"


def _holds_certificate(path: Path) -> bool:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError):
        return False
    return True
