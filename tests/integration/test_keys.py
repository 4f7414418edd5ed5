"""Signing keys in the database, on both databases: the first key (made or imported from the
key file of earlier versions), rotation (what the old key signed keeps working, what is new is
signed with the new key), the end of a retired key, two processes starting at once, the
``MAILBOT_SECRET_KEY`` override, revoking a leaked key, and what a refused token leaves in the
log and tells staff.

Links are opened over real HTTP and replies go through the real SMTP gateway (the harness and
the web helpers of test_web.py)."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import col, select

from db.engine import make_engine, session_scope
from db.migrate import upgrade
from db.models import SigningKey, Token
from mailbot.config import Settings, load_settings
from mailbot.errors import ConfigError
from mailbot.keys import (
    SIGNING_GRACE,
    Key,
    Keyring,
    describe,
    ensure_signing_key,
    keyring,
    revoke,
    rotate,
)
from mailbot.staff import add_staff
from mailbot.tokens import link_refusal, link_token
from tests.integration.conftest import HarnessFactory
from tests.integration.test_web import (
    CONFIRMATION,
    Site,
    SiteFactory,
    approve,
    link_in,
    path_of,
    recipient,
    serve_web,
    submit,
)
from tests.support.harness import STAFF, Harness, body_text
from tests.support.loop import LoopThread
from tests.support.migrations import database_at, downgrade
from tests.support.replies import reply_address, reply_to

RECEIPT = "受付完了"


@pytest.fixture
def site_factory(loop_thread: LoopThread) -> Iterator[SiteFactory]:
    """The status page of a harness on a loopback port (as in test_web.py)."""
    sites: list[Site] = []

    def start(h: Harness) -> Site:
        sites.append(serve_web(loop_thread, h))
        return sites[-1]

    yield start
    for site in sites:
        loop_thread.run(site.server.stop())


def materials(engine: Engine) -> dict[int, bytes]:
    """Each key's material by id, as an operator would read it with psql or sqlite3."""
    with session_scope(engine) as session:
        rows = session.exec(select(SigningKey)).all()
        return {int(row.id or 0): row.material.encode() for row in rows}


def token_of(link: str) -> str:
    return link.split("?t=", 1)[1]


def signed_by(key: bytes, link: str, receipt_no: str, now: datetime) -> bool:
    """Whether ``key`` alone verifies ``link``."""
    alone = Keyring(Key(None, key))
    return link_refusal(alone, token_of(link), receipt_no=receipt_no, now=now) is None


def review_request(sent: list[EmailMessage], to: str = STAFF) -> EmailMessage:
    return next(m for m in sent if "審査依頼" in str(m["Subject"]) and recipient(m) == to)


# --- the first key -------------------------------------------------------------------------------


def test_the_first_key_is_made_once(engine: Engine, settings: Settings) -> None:
    # The engine fixture ran `ensure_signing_key`, as `mailbot db upgrade` does.
    assert ensure_signing_key(engine, settings) == "signing keys in place"
    with session_scope(engine) as session:
        (key,) = describe(session, settings)
    assert key.current and not key.imported and key.verifies_until is None
    assert len(materials(engine)[key.id]) >= 64  # token_urlsafe(48)


def test_without_keys_signing_says_to_run_db_upgrade(database_url: str, settings: Settings) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)  # tables, but no key: what a database upgraded without mailbot's help has
        with pytest.raises(ConfigError, match="mailbot db upgrade"), session_scope(engine) as s:
            keyring(s, settings)
        with pytest.raises(ConfigError, match="mailbot db upgrade"):
            rotate(engine, settings)
    finally:
        engine.dispose()


@pytest.fixture
def file_key(settings: Settings) -> str:
    """``$MAILBOT_HOME/secret_key`` as earlier versions left it, written before the engine
    fixture runs `ensure_signing_key` (the test names this fixture first)."""
    key = secrets.token_urlsafe(48)
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "secret_key").write_text(key + "\n")
    return key


def test_the_key_file_of_earlier_versions_is_imported_and_what_it_signed_still_works(
    file_key: str, harness_factory: HarnessFactory, settings: Settings, site_factory: SiteFactory
) -> None:
    # Earlier versions signed with the file's key exactly as MAILBOT_SECRET_KEY signs, and
    # recorded no key with their reply tokens: this harness mails what they mailed.
    earlier = harness_factory(secret_key=file_key)
    with session_scope(earlier.engine) as session:
        (key,) = describe(session, settings)
    assert key.imported and key.current
    assert materials(earlier.engine)[key.id] == file_key.encode()

    sent = submit(earlier)
    link = link_in(sent, RECEIPT)
    with session_scope(earlier.engine) as session:
        assert {t.key_id for t in session.exec(select(Token))} == {None}

    # Upgraded: no MAILBOT_SECRET_KEY, the keys come from the database.
    now = replace(earlier, settings=settings)
    assert site_factory(now).get(path_of(link)).status == 200
    approve(now, sent)  # the review request's reply address, signed by the file's key
    assert now.applications()[0].status == "approved"


def test_a_second_instance_key_file_is_imported_as_a_retired_key(
    engine: Engine, settings: Settings, harness_factory: HarnessFactory, site_factory: SiteFactory
) -> None:
    """Two instances that each made their own file (the bug this replaces): the second file's
    key joins as a retired key, so the links that instance mailed keep opening."""
    h = harness_factory()
    submit(h)  # 260001A
    other_home = settings.home.parent / "other-instance"
    other_home.mkdir()
    other_key = secrets.token_urlsafe(48)
    (other_home / "secret_key").write_text(other_key)
    other = load_settings(home=other_home, database_url=settings.database_url)

    assert "retired" in ensure_signing_key(engine, other, now=h.now)
    assert ensure_signing_key(engine, other, now=h.now) == "signing keys in place"
    with session_scope(engine) as session:
        imported, current = describe(session, settings)  # newest first
    assert current.current and imported.imported and not imported.current
    assert imported.verifies_until == h.now + SIGNING_GRACE + timedelta(days=90)

    mailed_by_other = link_token(
        Keyring(Key(None, other_key.encode())), "260001A", h.now + timedelta(days=90)
    )
    assert site_factory(h).get(f"/a/260001A?t={mailed_by_other}").status == 200


def test_two_processes_starting_at_once_make_one_key(database_url: str, tmp_path: Path) -> None:
    upgrade_engine = make_engine(database_url)
    upgrade(upgrade_engine)
    upgrade_engine.dispose()
    settings = load_settings(home=tmp_path / "home", database_url=database_url)
    starters = 8
    engines = [make_engine(database_url) for _ in range(starters)]  # a pool each, as processes
    barrier = threading.Barrier(starters)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def start(engine: Engine) -> None:
        barrier.wait()
        try:
            outcomes.append(ensure_signing_key(engine, settings))
        except BaseException as exc:  # reported below, with the others' outcomes
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        assert sorted(outcomes) == ["created signing key 1"] + ["signing keys in place"] * 7
        assert list(materials(engines[0])) == [1]
    finally:
        for engine in engines:
            engine.dispose()


# --- rotation --------------------------------------------------------------------------------------


def test_after_rotation_old_links_and_reply_addresses_work_and_new_ones_use_the_new_key(
    harness_factory: HarnessFactory, site_factory: SiteFactory
) -> None:
    h = harness_factory()
    sent = submit(h)
    old_link = link_in(sent, RECEIPT)

    described = rotate(h.engine, h.settings, now=h.now)
    new, old = described
    assert (new.id, new.current, old.id, old.current) == (2, True, 1, False)
    # Its longest token: the links (90 days from now) and the applicant reply tokens (as long).
    assert old.verifies_until == h.now + SIGNING_GRACE + timedelta(days=90)

    site = site_factory(h)
    assert site.get(path_of(old_link)).status == 200
    with session_scope(h.engine) as session:
        tokens_before = len(session.exec(select(Token)).all())
    notices = approve(h, sent)  # the review token signed with key 1
    assert h.applications()[0].status == "approved"

    new_link = link_in(notices, CONFIRMATION)
    keys = materials(h.engine)
    assert signed_by(keys[2], new_link, "260001A", h.now)
    assert not signed_by(keys[1], new_link, "260001A", h.now)
    assert site.get(path_of(new_link)).status == 200
    with session_scope(h.engine) as session:
        issued_since = session.exec(select(Token).where(col(Token.id) > tokens_before))
        assert {(t.purpose, t.key_id) for t in issued_since} == {("applicant", 2), ("cancel", 2)}


def test_a_retired_key_verifies_until_its_longest_token_expires_then_nothing(
    harness_factory: HarnessFactory,
    site_factory: SiteFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Short-lived links, so that the approvers' cancel tokens (until the start date's run time
    # plus MAILBOT_REVIEW_TOKEN_DAYS) are what key 1 signed that lives longest.
    h = harness_factory(link_token_days=1)
    approve(h, submit(h))
    with session_scope(h.engine) as session:
        cancel = session.exec(select(Token).where(Token.purpose == "cancel")).one()
        longest = (
            cancel.expires_at if cancel.expires_at.tzinfo else cancel.expires_at.replace(tzinfo=UTC)
        )
    assert longest > h.now + SIGNING_GRACE + timedelta(days=1)

    (_, old) = rotate(h.engine, h.settings, now=h.now)
    assert old.verifies_until == longest

    # Someone holding the retired key signs a link that would open for a year: it opens only
    # while the key verifies. The same link signed with the current key keeps opening.
    keys = materials(h.engine)
    year = h.now + timedelta(days=365)
    with_old = link_token(Keyring(Key(None, keys[1])), "260001A", year)
    with_new = link_token(Keyring(Key(None, keys[2])), "260001A", year)
    site = site_factory(h)
    h.now = longest - timedelta(seconds=1)
    assert site.get(f"/a/260001A?t={with_old}").status == 200
    h.now = longest
    caplog.set_level(logging.WARNING, logger="mailbot.web")
    assert site.get(f"/a/260001A?t={with_old}").status == 404
    assert site.get(f"/a/260001A?t={with_new}").status == 200
    assert "status link refused: bad_signature" in caplog.text
    assert with_old not in caplog.text and with_old.split(".")[1] not in caplog.text
    with session_scope(h.engine) as session:
        assert [k.verifies(h.now) for k in describe(session, h.settings)] == [True, False]


def test_a_process_picks_up_a_rotation_made_by_another_without_restart(
    harness_factory: HarnessFactory, site_factory: SiteFactory, database_url: str
) -> None:
    """The web server and worker here hold their keyring in memory; another process (its own
    engine) rotates. A link the other process signs with the new key opens here at once."""
    h = harness_factory()
    submit(h)
    site = site_factory(h)
    assert site.get(f"/a/260001A?t={token_of(link_in(h.all_mail(), RECEIPT))}").status == 200

    elsewhere = make_engine(database_url)
    try:
        rotate(elsewhere, h.settings, now=h.now)
        with session_scope(elsewhere) as session:
            signed_elsewhere = link_token(
                keyring(session, h.settings), "260001A", h.now + timedelta(days=1)
            )
    finally:
        elsewhere.dispose()
    assert signed_by(materials(h.engine)[2], f"?t={signed_elsewhere}", "260001A", h.now)
    assert site.get(f"/a/260001A?t={signed_elsewhere}").status == 200


# --- revocation (a leaked key) ------------------------------------------------------------------


def test_a_revoked_key_verifies_nothing_at_once_and_the_current_one_keeps_working(
    harness_factory: HarnessFactory, site_factory: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Key 1 leaked after a rotation: its links and reply addresses stop at once, long before
    it would have stopped verifying as a retired key; key 2's keep working."""
    h = harness_factory()
    sent = submit(h)
    old_link = link_in(sent, RECEIPT)
    rotate(h.engine, h.settings, now=h.now)
    site = site_factory(h)
    assert site.get(path_of(old_link)).status == 200  # retired: it still verifies

    caplog.set_level(logging.WARNING)
    done = revoke(h.engine, h.settings, 1, now=h.now)
    assert (done.revoked, done.was_current, done.already) == (1, False, False)
    # The review request's token and the applicant's two reply tokens, all signed by key 1.
    assert done.reply_tokens_lost == 3
    assert "signing key 1 revoked" in caplog.text
    assert [(k.id, k.state, k.verifies(h.now)) for k in done.keys] == [
        (2, "current", True),
        (1, "revoked", False),
    ]

    assert site.get(path_of(old_link)).status == 404
    keys = materials(h.engine)
    year = h.now + timedelta(days=365)
    with_new = link_token(Keyring(Key(None, keys[2])), "260001A", year)
    assert site.get(f"/a/260001A?t={with_new}").status == 200

    # The staff member's reply to the review request signed with key 1 is refused.
    review = review_request(sent)
    raw = reply_to(review, sender=STAFF, body="承認します")
    (answer,) = h.round_trip(raw, mail_from=STAFF, rcpt_to=reply_address(review))
    assert h.applications()[0].status == "under_review"
    assert "reply refused: token_bad_signature" in caplog.text
    assert "署名鍵" in body_text(answer)


def test_revoking_the_current_key_makes_a_new_one_and_what_is_new_is_signed_with_it(
    harness_factory: HarnessFactory, site_factory: SiteFactory
) -> None:
    h = harness_factory()
    old_link = link_in(submit(h), RECEIPT)
    done = revoke(h.engine, h.settings, 1, now=h.now)
    assert (done.was_current, [k.id for k in done.keys]) == (True, [2, 1])
    assert done.keys[0].current and done.keys[1].state == "revoked"

    site = site_factory(h)
    assert site.get(path_of(old_link)).status == 404
    # A new request: its notices are signed with key 2 and its link opens.
    new_link = link_in(submit(h, "1ANAC001"), RECEIPT)
    assert signed_by(materials(h.engine)[2], new_link, "260002A", h.now)
    assert site.get(path_of(new_link)).status == 200

    again = revoke(h.engine, h.settings, 1, now=h.now)
    assert again.already and [k.id for k in again.keys] == [2, 1]


def test_revoking_a_key_that_does_not_exist_names_the_keys_there_are(
    engine: Engine, settings: Settings
) -> None:
    with pytest.raises(ConfigError, match=r"no signing key 9 \(keys: 1;"):
        revoke(engine, settings, 9)
    with session_scope(engine) as session:
        assert [k.state for k in describe(session, settings)] == ["current"]


# --- the override ------------------------------------------------------------------------------------


def test_mailbot_secret_key_is_the_only_key_while_it_is_set(
    harness_factory: HarnessFactory, site_factory: SiteFactory
) -> None:
    override = "o" * 40
    h = harness_factory(secret_key=override)
    link = link_in(submit(h), RECEIPT)
    assert signed_by(override.encode(), link, "260001A", h.now)
    database_key = materials(h.engine)[1]
    by_database_key = link_token(
        Keyring(Key(None, database_key)), "260001A", h.now + timedelta(days=1)
    )
    site = site_factory(h)
    assert site.get(path_of(link)).status == 200
    assert site.get(f"/a/260001A?t={by_database_key}").status == 404


# --- refusals: logged, and staff told the truth ---------------------------------------------------


def test_a_refused_reply_token_is_logged_with_its_reason_and_staff_hear_it_may_be_the_keys(
    harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness_factory()
    with session_scope(h.engine) as session:
        add_staff(session, "staff2@mailbot.localhost")
    sent = submit(h)
    request = review_request(sent)
    real = reply_address(request)
    tag, _, domain = real.partition("@")
    forged_token = ("a" if tag[-1] != "a" else "b") * 32  # right shape, not our signature
    forged = f"apply+t{forged_token}@{domain}"
    caplog.set_level(logging.WARNING)
    raw = reply_to(request, sender=STAFF, body="承認", to=forged)
    (answer,) = h.round_trip(raw, mail_from=STAFF, rcpt_to=forged)

    assert h.applications()[0].status == "under_review"
    assert "reply refused: token_bad_signature" in caplog.text
    assert forged_token not in caplog.text
    told = body_text(answer)
    assert "署名鍵" in told and "signing keys" in told
    assert "from the address it was mailed to" not in told

    # Used twice: the reason is that, not "answer from the right address".
    for _ in range(2):
        approval = reply_to(request, sender=STAFF, body="承認")
        out = h.round_trip(approval, mail_from=STAFF, rcpt_to=real)
    (again,) = out
    assert "reply refused: token_used" in caplog.text
    assert "1回限り" in body_text(again)
    assert real.partition("+t")[2].partition("@")[0] not in caplog.text


# --- the migration -----------------------------------------------------------------------------------


def test_migration_0005_keeps_tokens_and_goes_back(database_url: str) -> None:
    with database_at(database_url, "0004") as engine:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO token (nonce, purpose, version, created_at, expires_at) "
                    "VALUES ('n1', 'review', 1, '2026-11-27 00:00:00+00:00', "
                    "'2026-12-11 00:00:00+00:00')"
                )
            )
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT nonce, key_id FROM token")).all() == [("n1", None)]
        downgrade(engine, "0004")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT nonce FROM token")).scalars().all() == ["n1"]
        upgrade(engine)


def test_migration_0009_adds_revocation_and_goes_back(database_url: str) -> None:
    with database_at(database_url, "0008") as engine:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO signing_key (material, created_at, imported) "
                    "VALUES ('m1', '2026-11-27 00:00:00+00:00', false)"
                )
            )
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT material, revoked_at FROM signing_key")).all() == [
                ("m1", None)
            ]
        downgrade(engine, "0008")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT material FROM signing_key")).scalars().all() == ["m1"]
        upgrade(engine)
