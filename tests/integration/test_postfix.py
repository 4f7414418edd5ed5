"""Postfix in front, three ways, with a real Postfix and the lines of docs/operations.md.

(a) Postfix pipes into ``mailbot ingest``: the mailbot installed by deploy/install.sh, run by
    Postfix as the ``mailbot`` user with no environment, reading only the system file
    ``/etc/mailbot/mailbot.toml`` (a private test file mounted there for Postfix alone). Stored
    once and answered; with the database unavailable Postfix defers the message, and delivers
    it exactly once when the database is back.
(b) Postfix relays mailbot's domain to the SMTP gateway.
(c) mailbot's notices leave through Postfix, which relays them on (to a sink here).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import textwrap
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from db.engine import make_engine, session_scope
from db.models import InboundMessage
from mailbot.calendar import BusinessCalendar
from mailbot.config import Settings, load_settings
from mailbot.intake import IntakeContext
from mailbot.notify import intent_renderer
from mailbot.outbox import deliver_due, make_transport
from mailbot.worker import drain
from tests.integration.conftest import HarnessFactory
from tests.support.harness import NOW, load_demo, read_maildir
from tests.support.install import (
    Install,
    install_available,
    installed,
    run_as_service_user,
    service_ids,
    world_readable_temp_dir,
)
from tests.support.needs import require
from tests.support.postfix import Postfix, doc_block, postfix_available, substitute
from tests.support.requests import INTAKE, SATO, YAMADA, form, mail
from tests.support.smtp import Sink, free_port, wait_for

DOMAIN = "mailbot.example.jp"  # the documented domain: the lines run unchanged there
APPLY = f"apply@{DOMAIN}"
RECEIPT = "利用申込受付完了のお知らせ"
DOC_VENV = "/opt/mailbot/venv"


def request_mail() -> bytes:
    """A request that passes every rule at the harness's clock, addressed to the doc's domain."""
    raw = mail(form("1ANACA0A", start="2026年12月15日"))
    return raw.replace(INTAKE.encode(), APPLY.encode())


def addressee(message: EmailMessage) -> str:
    return str(message["To"].addresses[0].addr_spec)


def inbound_rows(engine: Engine) -> list[InboundMessage]:
    with session_scope(engine) as session:
        return list(session.exec(select(InboundMessage).order_by(col(InboundMessage.id))))


def answer(engine: Engine, settings: Settings) -> None:
    """What the worker and the outbox of ``mailbot serve`` do with what came in."""
    drain(engine, IntakeContext(settings=settings, calendar=BusinessCalendar()), lambda: NOW)
    asyncio.run(
        deliver_due(
            engine,
            make_transport(settings),
            now=NOW,
            max_attempts=settings.outbox_max_attempts,
            backoff_seconds=settings.outbox_backoff_seconds,
            render=intent_renderer(settings),
        )
    )


@pytest.fixture
def postfixes() -> Iterator[list[Postfix]]:
    started: list[Postfix] = []
    yield started
    for server in started:
        server.close()


# --- (a) the pipe -----------------------------------------------------------------------------


@dataclass
class SystemConfig:
    """A private /etc/mailbot (the install's configuration, edited as an operator would) and
    the mailbot home it names, owned by the mailbot user."""

    etc: Path
    state: Path
    database_url: str

    @property
    def file(self) -> Path:
        return self.etc / "mailbot.toml"

    def write(self, text: str) -> None:
        self.file.write_text(text)
        os.chown(self.file, 0, service_ids()[1])
        self.file.chmod(0o640)

    def settings(self, monkeypatch: pytest.MonkeyPatch) -> Settings:
        """What the pipe reads: this file and nothing else (`make` exports MAILBOT_HOME)."""
        for name in os.environ:
            if name.startswith("MAILBOT_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("MAILBOT_CONFIG", str(self.file))
        return load_settings()


@pytest.fixture(scope="module")
def install() -> Install:
    require(postfix_available() or install_available())
    return installed()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def system_config(request: pytest.FixtureRequest, install: Install) -> Iterator[SystemConfig]:
    root = world_readable_temp_dir("mailbot-etc-")
    etc, state = root / "etc", root / "state"
    uid, gid = service_ids()
    for folder, owner in ((etc, 0), (state, uid)):
        folder.mkdir(mode=0o750)
        os.chown(folder, owner, gid)
    # The install's file, with this test's home, and notices into a Maildir there.
    text = substitute(install.config.read_text(), f'home = "{install.state_dir}"', "")
    text = substitute(text, 'relay = "smtp://127.0.0.1:25"', "")
    text = f'home = "{state}"\nrelay = "maildir:{state / "sent"}"\n' + text
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_schema_url")
        text = f'database_url = "{url}"\n' + text
    else:
        url = f"sqlite:///{state / 'mailbot.db'}"
    config = SystemConfig(etc=etc, state=state, database_url=url)
    config.write(text)
    upgraded = run_as_service_user(install, "db", "upgrade", config=config.file)
    assert upgraded.returncode == 0, upgraded.stderr
    yield config
    shutil.rmtree(root, ignore_errors=True)


def pipe_postfix(install: Install, config: SystemConfig) -> Postfix:
    master = substitute(doc_block("master.cf pipe"), DOC_VENV, str(install.venv))
    return Postfix(
        main_cf=doc_block("main.cf pipe") + doc_block("main.cf mynetworks"),
        master_cf=master,
        etc_mailbot=config.etc,
    )


@dataclass(frozen=True)
class Piped:
    """A private Postfix piping into the installed ``mailbot ingest``, and the settings and the
    database the pipe reads and writes."""

    settings: Settings
    engine: Engine
    postfix: Postfix


@pytest.fixture
def piped(
    install: Install, system_config: SystemConfig, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Piped]:
    settings = system_config.settings(monkeypatch)
    engine = make_engine(settings.database_url)
    postfix = pipe_postfix(install, system_config).start()
    try:
        yield Piped(settings, engine, postfix)
    finally:
        postfix.close()
        engine.dispose()


def test_postfix_pipes_into_ingest_as_mailbot_with_only_the_system_file(
    piped: Piped, system_config: SystemConfig
) -> None:
    settings, engine, postfix = piped.settings, piped.engine, piped.postfix
    load_demo(engine)
    raw = request_mail()

    postfix.submit(raw, mail_from=YAMADA, rcpt_to=APPLY)

    postfix.wait_for_log(rf"to=<{APPLY}>, relay=mailbot, .*status=sent")
    (row,) = inbound_rows(engine)
    assert (row.channel, row.envelope_from, row.envelope_to) == ("pipe", YAMADA, [APPLY])
    assert raw.replace(b"\r\n", b"\n") in row.raw  # as sent, after Postfix's Received line
    # The SQLite files the pipe wrote are the service user's, for the service to write too.
    written = [path.stat().st_uid for path in system_config.state.iterdir()]
    assert set(written) <= {service_ids()[0]}
    assert bool(written) == system_config.database_url.startswith("sqlite")

    answer(engine, settings)
    notices = [m for m in read_maildir(settings.home / "sent") if RECEIPT in str(m["Subject"])]
    assert {addressee(m) for m in notices} == {YAMADA, SATO}
    assert len(inbound_rows(engine)) == 1


def test_postfix_refuses_other_addresses_of_the_domain_and_takes_reply_addresses(
    piped: Piped,
) -> None:
    engine, postfix = piped.engine, piped.postfix
    with pytest.raises(Exception) as refused:
        postfix.submit(request_mail(), mail_from=YAMADA, rcpt_to=f"webmaster@{DOMAIN}")
    assert "550" in str(refused.value) and "Recipient address rejected" in str(refused.value)
    postfix.submit(request_mail(), mail_from=YAMADA, rcpt_to=f"apply+r123@{DOMAIN}")

    postfix.wait_for_log(rf"to=<apply\+r123@{DOMAIN}>, relay=mailbot, .*status=sent")
    assert [row.envelope_to for row in inbound_rows(engine)] == [[f"apply+r123@{DOMAIN}"]]


@contextmanager
def database_unavailable(config: SystemConfig) -> Iterator[str]:
    """Make the database unavailable; yield what the deferral's reason must name.

    SQLite: the database file read-only for its owner (what a wrong permission does);
    PostgreSQL: the configuration naming a port nobody listens on (a server that is down)."""
    if config.database_url.startswith("sqlite"):
        database = config.state / "mailbot.db"
        mode = database.stat().st_mode & 0o777
        database.chmod(0o440)
        try:
            yield f"{database} is not writable by user 'mailbot'"
        finally:
            database.chmod(mode)
        return
    text = config.file.read_text()
    port = free_port()
    config.write(substitute(text, "@127.0.0.1:5432/", f"@127.0.0.1:{port}/"))
    try:
        yield f"port {port} failed: Connection refused"
    finally:
        config.write(text)


def test_database_unavailable_postfix_defers_then_delivers_exactly_once(
    piped: Piped, system_config: SystemConfig
) -> None:
    engine, postfix = piped.engine, piped.postfix
    with database_unavailable(system_config) as reason:
        postfix.submit(request_mail(), mail_from=YAMADA, rcpt_to=APPLY)
        (deferred,) = postfix.wait_for_log(rf"to=<{APPLY}>, relay=mailbot, .*status=deferred")
        assert "temporary failure" in deferred and reason in deferred
        wait_for(lambda: [m["queue_name"] for m in postfix.queue()] == ["deferred"])

    assert inbound_rows(engine) == []
    postfix.flush()
    postfix.wait_for_log(rf"to=<{APPLY}>, relay=mailbot, .*status=sent")
    wait_for(lambda: postfix.queue() == [])
    postfix.flush()  # nothing left to deliver again
    assert len(inbound_rows(engine)) == 1
    assert len(postfix.wait_for_log(r"status=sent")) == 1


# --- (b) relay to the gateway, (c) notices out -----------------------------------------------------


def test_postfix_relays_the_domain_to_the_gateway(
    harness_factory: HarnessFactory, postfixes: list[Postfix]
) -> None:
    require(postfix_available())
    harness = harness_factory(
        domain=DOMAIN, **tomllib.loads(doc_block("mailbot.toml to the gateway"))
    )
    main_cf = substitute(doc_block("main.cf to the gateway"), ":2525", f":{harness.gateway.port}")
    postfix = Postfix(main_cf=main_cf + doc_block("main.cf mynetworks")).start()
    postfixes.append(postfix)
    raw = request_mail()

    postfix.submit(raw, mail_from=YAMADA, rcpt_to=APPLY)

    postfix.wait_for_log(rf"to=<{APPLY}>, relay=127\.0\.0\.1.*status=sent \(250")
    (row,) = harness.inbound()
    assert (row.channel, row.envelope_from, row.envelope_to) == ("smtp", YAMADA, [APPLY])
    harness.process()
    harness.deliver()
    notices = [m for m in harness.new_mail() if RECEIPT in str(m["Subject"])]
    assert {addressee(m) for m in notices} == {YAMADA, SATO}


def test_notices_leave_through_postfix(
    harness_factory: HarnessFactory, postfixes: list[Postfix]
) -> None:
    require(postfix_available())
    sink = Sink().start()
    try:
        postfix = Postfix(
            main_cf=doc_block("main.cf mynetworks"), relayhost=f"[127.0.0.1]:{sink.port}"
        ).start()
        postfixes.append(postfix)
        relay_line = substitute(doc_block("mailbot.toml relay"), ":25", f":{postfix.port}")
        harness = harness_factory(domain=DOMAIN, **tomllib.loads(relay_line))
        harness.send(request_mail(), rcpt_to=APPLY)
        harness.process()

        asyncio.run(
            deliver_due(
                harness.engine,
                make_transport(harness.settings),
                now=NOW,
                max_attempts=1,
                backoff_seconds=1,
                render=intent_renderer(harness.settings),
            )
        )

        rows = harness.outbound()
        assert rows and {row.status for row in rows} == {"sent"}
        wait_for(lambda: len(sink.deliveries) == len(rows))
        arrived = {_message_id(d.content): d for d in sink.deliveries}
        for row in rows:
            delivery = arrived[row.message_id]
            assert (delivery.mail_from, delivery.rcpt_tos) == (
                f"apply+bounce@{DOMAIN}",
                [row.recipient],
            )
            assert row.raw is not None and row.raw.replace(b"\r\n", b"\n") in (
                delivery.content.replace(b"\r\n", b"\n")
            )
        receipts = [d for d in arrived.values() if RECEIPT in _subject(d.content)]
        assert {d.rcpt_tos[0] for d in receipts} == {YAMADA, SATO}
        postfix.wait_for_log(rf"to=<{YAMADA}>, relay=127\.0\.0\.1.*status=sent")
    finally:
        sink.stop()


def _parse(content: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(content)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _message_id(content: bytes) -> str:
    return str(_parse(content)["Message-ID"])


def _subject(content: bytes) -> str:
    return str(_parse(content)["Subject"])


def test_the_example_configuration_relays_through_postfix_as_documented() -> None:
    example = (Path(__file__).resolve().parents[2] / "deploy" / "mailbot.toml").read_text()
    assert doc_block("mailbot.toml relay").strip() in example.splitlines()
    assert tomllib.loads(example)["domain"] == DOMAIN


def test_the_walkthrough_sets_up_postfix_with_the_tested_lines() -> None:
    """docs/operations.md's install walkthrough types the lines the tests above run."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    walkthrough = text.split("<!-- walkthrough -->", 1)[1].split("**Upgrade**", 1)[0]
    postconf = re.search(r"postconf -e (.*?)\n   cat", walkthrough, re.S)
    assert postconf is not None
    assert re.findall(r"'([^']*)'", postconf.group(1)) == doc_block("main.cf pipe").splitlines()
    heredoc = re.search(r"<<'END'\n(.*?)\n   END\n", walkthrough, re.S)
    assert heredoc is not None
    assert textwrap.dedent(heredoc.group(1)) + "\n" == doc_block("master.cf pipe")
