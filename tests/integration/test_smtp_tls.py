"""STARTTLS on the SMTP gateway: a real ``SmtpGateway`` with a self-signed certificate made by
the ``openssl`` command, a real smtplib client that trusts it, both databases.

The certificate settings are the lines of docs/operations.md ("### STARTTLS"), with the paths
pointed at the test's files; start-up failures are ``mailbot serve`` as a real process.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from mailbot.gateway.smtp import SmtpGateway
from tests.integration.conftest import GATEWAY_DOMAIN, GatewayFactory
from tests.support.smtp import split_trace, stored, stored_with_trace, wait_for

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = GATEWAY_DOMAIN
OURS = f"apply@{DOMAIN}"
SENDER = "applicant@example.co.jp"


# --- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


def make_certificate(folder: Path, name: str = "server") -> Certificate:
    """A self-signed certificate for 127.0.0.1 and mailbot.test, and its key (PEM)."""
    openssl = shutil.which("openssl")
    assert openssl, "these tests need the openssl command (Debian package openssl)"
    folder.mkdir(parents=True, exist_ok=True)
    made = Certificate(cert=folder / f"{name}-cert.pem", key=folder / f"{name}-key.pem")
    subprocess.run(
        [
            openssl,
            *("req", "-x509", "-nodes", "-days", "2"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-subj", f"/CN={DOMAIN}"),
            *("-addext", f"subjectAltName=DNS:{DOMAIN},IP:127.0.0.1"),
            *("-keyout", str(made.key), "-out", str(made.cert)),
        ],
        check=True,
        capture_output=True,
    )
    return made


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return make_certificate(tmp_path / "tls")


def trusting(certificate: Certificate) -> ssl.SSLContext:
    """A client context that trusts only this certificate, and checks the name (127.0.0.1)."""
    return ssl.create_default_context(cafile=certificate.cert)


def documented_tls_settings(certificate: Certificate) -> dict[str, Any]:
    """The TOML lines of docs/operations.md's STARTTLS section, with this test's files."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("### STARTTLS", 1)[1]
    found = re.search(r"```toml\n(.*?)```", section, re.S)
    assert found, "docs/operations.md: no TOML block under ### STARTTLS"
    values = tomllib.loads(found.group(1))
    assert set(values) == {"smtp_tls_cert", "smtp_tls_key", "smtp_require_tls"}
    values["smtp_tls_cert"] = str(certificate.cert)
    values["smtp_tls_key"] = str(certificate.key)
    return values


# --- the gateway -----------------------------------------------------------------------------


def connect(gateway: SmtpGateway) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", gateway.port, timeout=30)
    client.ehlo("client.example.co.jp")
    return client


def message(subject: str) -> bytes:
    return (
        f"From: {SENDER}\r\nTo: {OURS}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.co.jp>\r\n\r\nhello over TLS\r\n"
    ).encode()


def transaction(client: smtplib.SMTP, raw: bytes) -> tuple[int, bytes]:
    """MAIL, RCPT and DATA; the reply to DATA."""
    assert client.mail(SENDER)[0] == 250
    assert client.rcpt(OURS)[0] == 250
    return client.data(raw)


# --- tests -----------------------------------------------------------------------------------


def test_starttls_is_offered_and_a_message_over_it_is_stored(
    start_gateway: GatewayFactory, certificate: Certificate, engine: Engine
) -> None:
    gateway = start_gateway(**documented_tls_settings(certificate))
    raw = message("over-tls")
    with connect(gateway) as client:
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        code, _ = client.starttls(context=trusting(certificate))
        assert code == 220
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.version() in {"TLSv1.2", "TLSv1.3"}
        client.ehlo("client.example.co.jp")  # RFC 3207: the client starts over
        assert not client.has_extn("starttls"), "STARTTLS is offered once"
        assert not client.has_extn("auth"), "AUTH is never offered, not even over TLS"
        code, reply = transaction(client, raw)
    assert code == 250
    assert reply.startswith(b"2.0.0 Ok: stored as ")
    assert stored(engine) == [raw]
    # The gateway's trace header records the TLS (RFC 3848: ESMTPS) and the client's name.
    (trace, _) = split_trace(stored_with_trace(engine)[0])
    assert trace.startswith(b"Received: from client.example.co.jp ([127.0.0.1])\r\n")
    assert b" with ESMTPS id " in trace


def test_auth_is_refused_before_and_after_starttls(
    start_gateway: GatewayFactory, certificate: Certificate, engine: Engine
) -> None:
    gateway = start_gateway(smtp_tls_cert=certificate.cert, smtp_tls_key=certificate.key)
    credentials = "AGFwcGx5AHNlY3JldA=="  # PLAIN: apply / secret
    with connect(gateway) as client:
        code, _ = client.docmd("AUTH", f"PLAIN {credentials}")
        assert code >= 500
        client.starttls(context=trusting(certificate))
        client.ehlo("client.example.co.jp")
        for mechanism in ("PLAIN", "LOGIN", "CRAM-MD5"):
            code, _ = client.docmd("AUTH", f"{mechanism} {credentials}")
            assert code >= 500, f"AUTH {mechanism} over TLS answered {code}"
        # The session is still good for mail.
        code, _ = transaction(client, message("after-auth"))
    assert code == 250
    assert len(stored(engine)) == 1


def test_require_tls_refuses_mail_before_starttls_and_takes_it_after(
    start_gateway: GatewayFactory, certificate: Certificate, engine: Engine
) -> None:
    gateway = start_gateway(
        smtp_tls_cert=certificate.cert, smtp_tls_key=certificate.key, smtp_require_tls=True
    )
    raw = message("required")
    with connect(gateway) as client:
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        assert client.noop()[0] == 250
        for command, argument in (("MAIL", f"FROM:<{SENDER}>"), ("RCPT", f"TO:<{OURS}>")):
            code, reply = client.docmd(command, argument)
            assert (code, reply) == (530, b"Must issue a STARTTLS command first"), command
        assert client.docmd("DATA")[0] == 530
        assert client.docmd("HELO", "client.example.co.jp")[0] == 530
        assert stored(engine) == []
        assert client.starttls(context=trusting(certificate))[0] == 220
        client.ehlo("client.example.co.jp")
        code, _ = transaction(client, raw)
    assert code == 250
    assert stored(engine) == [raw]


def test_require_tls_still_lets_a_client_quit(
    start_gateway: GatewayFactory, certificate: Certificate
) -> None:
    gateway = start_gateway(
        smtp_tls_cert=certificate.cert, smtp_tls_key=certificate.key, smtp_require_tls=True
    )
    client = connect(gateway)
    assert client.quit()[0] == 221


def test_without_the_settings_starttls_is_not_offered(
    start_gateway: GatewayFactory, engine: Engine
) -> None:
    gateway = start_gateway()
    with connect(gateway) as client:
        assert not client.has_extn("starttls")
        assert not client.has_extn("auth")
        assert client.docmd("STARTTLS")[0] == 454
        code, _ = transaction(client, message("plain"))
    assert code == 250
    assert len(stored(engine)) == 1


def test_a_failed_handshake_closes_that_session_only(
    start_gateway: GatewayFactory,
    certificate: Certificate,
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = start_gateway(smtp_tls_cert=certificate.cert, smtp_tls_key=certificate.key)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as raw_client:
        reader = raw_client.makefile("rb")
        assert reader.readline().startswith(b"220")
        raw_client.sendall(b"EHLO scanner.example\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        raw_client.sendall(b"STARTTLS\r\n")
        assert reader.readline().startswith(b"220")
        raw_client.sendall(b"this is not a TLS ClientHello\r\n" * 4)
        # The server closes the connection (at most a TLS alert): no SMTP reply, no traceback.
        assert not re.match(rb"\d{3}[ -]", reader.read())
    # Logged once the server has torn the session down, a moment after the client saw it end.
    wait_for(lambda: "STARTTLS handshake failed" in caplog.text, timeout=10)
    assert "Traceback" not in caplog.text
    # Other clients are served as before.
    with connect(gateway) as client:
        client.starttls(context=trusting(certificate))
        client.ehlo("client.example.co.jp")
        assert transaction(client, message("after-scan"))[0] == 250
    assert len(stored(engine)) == 1


# --- start-up failures -------------------------------------------------------------------------


def serve(
    home: Path, settings: dict[str, str], *, as_user: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``mailbot serve --only smtp`` as a real process, configured by environment only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")}
    env["MAILBOT_CONFIG"] = os.environ["MAILBOT_CONFIG"]  # the tests' empty file
    env["MAILBOT_HOME"] = str(home)
    env.update({f"MAILBOT_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run(
        [*(as_user or []), sys.executable, "-m", "mailbot", "serve", "--only", "smtp"],
        env=env,
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused_to_start(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_a_missing_certificate_stops_serve_naming_the_setting_and_the_path(
    tmp_path: Path, certificate: Certificate
) -> None:
    missing = tmp_path / "tls" / "no-such-cert.pem"
    home = tmp_path / "home"
    result = serve(home, {"smtp_tls_cert": str(missing), "smtp_tls_key": str(certificate.key)})
    assert_refused_to_start(result, "MAILBOT_SMTP_TLS_CERT", str(missing), "does not exist")
    assert not home.exists(), "stopped before the database was touched"


@pytest.mark.parametrize(
    ("problem", "setting", "words"),
    [
        ("key of another certificate", "MAILBOT_SMTP_TLS_KEY", "is not the private key"),
        ("key named as the certificate", "MAILBOT_SMTP_TLS_CERT", "holds no PEM certificate"),
        ("certificate named as the key", "MAILBOT_SMTP_TLS_KEY", "no usable PEM private key"),
        ("key with a passphrase", "MAILBOT_SMTP_TLS_KEY", "passphrase"),
        ("a folder as the certificate", "MAILBOT_SMTP_TLS_CERT", "is a folder"),
    ],
)
def test_a_wrong_file_stops_serve_naming_the_setting_and_the_path(
    tmp_path: Path, certificate: Certificate, problem: str, setting: str, words: str
) -> None:
    cert, key = certificate.cert, certificate.key
    if problem == "key of another certificate":
        key = make_certificate(tmp_path / "other").key
    elif problem == "key named as the certificate":
        cert = certificate.key
    elif problem == "certificate named as the key":
        key = certificate.cert
    elif problem == "key with a passphrase":
        key = tmp_path / "tls" / "encrypted-key.pem"
        subprocess.run(
            [
                *("openssl", "pkey", "-aes256", "-passout", "pass:secret"),
                *("-in", str(certificate.key), "-out", str(key)),
            ],
            check=True,
            capture_output=True,
        )
    elif problem == "a folder as the certificate":
        cert = tmp_path / "tls"
    result = serve(tmp_path / "home", {"smtp_tls_cert": str(cert), "smtp_tls_key": str(key)})
    named = key if setting.endswith("KEY") else cert
    assert_refused_to_start(result, setting, str(named), words)


def test_an_unreadable_key_stops_serve_naming_the_user(certificate: Certificate) -> None:
    """As an operator meets it: the key is root's, the service runs as another user."""
    # A folder outside pytest's (root-only) tmp tree, which that user can enter.
    folder = Path(tempfile.mkdtemp(prefix="mailbot-tls-"))
    try:
        folder.chmod(0o755)
        cert = Path(shutil.copy(certificate.cert, folder / "fullchain.pem"))
        key = Path(shutil.copy(certificate.key, folder / "privkey.pem"))
        cert.chmod(0o644)
        key.chmod(0o600)
        nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        if os.geteuid() == 0 and _can_run_mailbot(nobody):
            # Root reads everything: serve runs as nobody instead.
            as_user, user = nobody, "'nobody'"
        elif os.geteuid() == 0:
            # A checkout in a private folder (`mktemp -d` is 0700): nobody cannot run this
            # venv. Root without the capabilities that override file modes meets the key's
            # mode like any other user.
            key.chmod(0o000)
            without = "-dac_override,-dac_read_search"
            as_user = ["setpriv", f"--bounding-set={without}", f"--inh-caps={without}"]
            user = "'root'"
        else:
            key.chmod(0o000)
            as_user = []
            user = repr(pwd.getpwuid(os.geteuid()).pw_name)
        result = serve(
            folder / "home",
            {"smtp_tls_cert": str(cert), "smtp_tls_key": str(key)},
            as_user=as_user,
        )
        assert_refused_to_start(result, "MAILBOT_SMTP_TLS_KEY", str(key), "not readable by")
        assert f"user {user}" in result.stderr
    finally:
        shutil.rmtree(folder)


def _can_run_mailbot(as_user: list[str]) -> bool:
    """Whether ``as_user`` can run this checkout's Python and import mailbot."""
    done = subprocess.run(
        [*as_user, sys.executable, "-c", "import mailbot"], capture_output=True, check=False
    )
    return done.returncode == 0


def test_a_session_over_starttls_counts_once_against_the_session_limit(
    start_gateway: GatewayFactory, certificate: Certificate, engine: Engine
) -> None:
    # One session at a time: a TLS session that were counted twice, or never released, would
    # leave the next connection answered 421.
    gateway = start_gateway(
        **documented_tls_settings(certificate),
        smtp_max_sessions=1,
        smtp_max_sessions_per_client=1,
    )
    for n in range(3):
        with connect(gateway) as client:
            client.starttls(context=trusting(certificate))
            client.ehlo("client.example.co.jp")
            assert transaction(client, message(f"tls-{n}"))[0] == 250
        wait_for(lambda: gateway.handler.admission.sessions == 0, timeout=5)
    assert stored(engine) == [message(f"tls-{n}") for n in range(3)]
