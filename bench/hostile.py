"""Hostile senders, measured (not a test): the figures of docs/security.md for issue 13, items
3 to 6 and 8.

    .venv/bin/python bench/hostile.py

One in-process mailbot (SQLite in a temporary directory, the real SMTP gateway on a loopback
port, the real worker and outbox, a Maildir relay, the demo registry) receives each attack over
SMTP with smtplib. For each it prints what mailbot did (the inbound status and outcome), how
many replies it queued, their sizes as queued in the outbox (raw bytes), and the time the worker
took. Then the XLSX XML attacks, parsed directly, with their time and peak memory.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.engine import make_engine
from db.migrate import upgrade
from mailbot.config import load_settings
from mailbot.keys import ensure_signing_key
from mailbot.parsers.xlsx_form import parse_xlsx
from tests.support.attachments import filled_blank_xlsx
from tests.support.harness import STAFF, Harness, start_harness
from tests.support.loop import LoopThread
from tests.support.replies import reply_address, reply_to
from tests.support.requests import INTAKE, OUTSIDER, YAMADA, form, mail


@dataclass
class Row:
    attack: str
    outcome: str
    replies: int
    sizes: str
    seconds: float


def nested(depth: int, sender: str) -> bytes:
    head = f"From: {sender}\r\nTo: {INTAKE}\r\nSubject: x\r\nMIME-Version: 1.0\r\n".encode()
    parts = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    return head + parts + b"Content-Type: text/plain\r\n\r\nhi\r\n"


def help_from(sender: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {INTAKE}\r\nSubject: help\r\n"
        "Message-ID: <help@example.net>\r\n\r\nPlease send the form.\r\n"
    ).encode()


def measure(h: Harness, attack: str, send: Callable[[], object]) -> Row:
    before_in = len(h.inbound())
    before_out = len(h.outbound())
    send()
    started = time.perf_counter()
    h.process()
    seconds = time.perf_counter() - started
    h.deliver()
    h.new_mail()
    fresh = h.inbound()[before_in:]
    queued = h.outbound()[before_out:]
    outcome = ", ".join(sorted({f"{m.status}/{m.kind or '-'}" for m in fresh}))
    sizes = ", ".join(f"{m.kind} {len(m.raw or b''):,} B" for m in queued) or "-"
    return Row(attack, outcome, len(queued), sizes, seconds)


def smtp_attacks(h: Harness) -> list[Row]:
    rows = []
    nested_raw = nested(1000, YAMADA)
    rows.append(
        measure(
            h,
            f"1,000-level multipart from a contact ({len(nested_raw):,} B)",
            lambda: h.send(nested_raw),
        )
    )
    lines = nested(800, YAMADA) + b"x\r\n" * 100_000
    rows.append(
        measure(h, f"800 levels over 100,000 short lines ({len(lines):,} B)", lambda: h.send(lines))
    )
    rows.append(
        measure(
            h,
            "the 1,000-level multipart from an outsider",
            lambda: h.send(nested(1000, OUTSIDER), mail_from=OUTSIDER),
        )
    )
    for sender in ("apply+bounce@mailbot.localhost", "APPLY+t12345@MAILBOT.LOCALHOST"):
        own = mail("x", sender=sender)
        rows.append(measure(h, f"request From: {sender}", partial(h.send, own, mail_from=sender)))
    rows.append(
        measure(
            h, "request with MAIL FROM:<>", lambda: h.send(mail("x", sender=OUTSIDER), mail_from="")
        )
    )
    request = help_from(OUTSIDER)
    rows.append(
        measure(
            h,
            f"help from an outsider ({len(request)} B)",
            lambda: h.send(request, mail_from=OUTSIDER),
        )
    )
    variants = ["Mallory+1@Example.NET", "MALLORY+x@example.net", OUTSIDER]

    def same_mailbox() -> None:
        for sender in variants:
            for _ in range(3):
                h.send(mail("申込", sender=sender), mail_from=sender)
                h.send(help_from(sender), mail_from=sender)

    rows.append(
        measure(h, "18 more (requests, help) from +tag/case variants, same day", same_mailbox)
    )
    h.now += timedelta(days=1)

    def flood() -> None:
        for n in range(h.settings.outsider_replies_per_hour + 40):
            sender = f"forged{n}@example.net"
            h.send(mail("申込", sender=sender), mail_from=sender)

    rows.append(
        measure(
            h,
            f"{h.settings.outsider_replies_per_hour + 40} requests from distinct forged outsiders in one hour",
            flood,
        )
    )
    rows.append(
        measure(h, "help from a registered contact", lambda: h.send(mail("", subject="help")))
    )
    rows.append(
        measure(
            h, "a contact's request with problems", lambda: h.send(mail("■事業所コード：TYO01\r\n"))
        )
    )
    return rows


def upper_case_tags(h: Harness) -> list[Row]:
    rows = []
    out = {}
    h.send(mail(form("1ANACA0A", "1ANACA0B", start="2026年12月15日")))
    h.process()
    h.deliver()
    for message in h.new_mail():
        out[str(message["To"].addresses[0].addr_spec), "審査依頼" in str(message["Subject"])] = (
            message
        )
    review = out[STAFF, True]
    address = reply_address(review).upper()
    raw = reply_to(review, sender=STAFF, body="承認", to=address)
    rows.append(
        measure(
            h,
            f"staff 承認 to {address[:16]}…",
            lambda: h.send(raw, mail_from=STAFF, rcpt_to=address),
        )
    )
    rows[-1].outcome += f" → application {h.applications()[0].status}"
    return rows


def xml_attacks() -> list[Row]:
    laughs = (
        '<?xml version="1.0"?>\n<!DOCTYPE l [<!ENTITY l0 "lol">'
        + "".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10))
        + "]>\n"
    )
    external = '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    rows = []
    for name, prolog in (("billion laughs", laughs), ("external entity", external)):
        out = io.BytesIO()
        with (
            zipfile.ZipFile(io.BytesIO(filled_blank_xlsx())) as source,
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
        ):
            for info in source.infolist():
                content = source.read(info.filename)
                if info.filename == "xl/worksheets/sheet1.xml":
                    content = prolog.encode() + content.split(b"?>", 1)[-1]
                target.writestr(info, content)
        tracemalloc.start()
        started = time.perf_counter()
        form_read = parse_xlsx(out.getvalue(), "申込書.xlsx")
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        codes = ",".join(p.code for p in form_read.problems)
        rows.append(
            Row(f"XLSX with {name} in a sheet", codes, 0, f"peak {peak / 1024:,.0f} KB", seconds)
        )
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database = f"sqlite:///{tmp}/mailbot.db"
        engine = make_engine(database)
        upgrade(engine)
        settings = load_settings(home=Path(tmp) / "home", database_url=database)
        ensure_signing_key(engine, settings)  # as `mailbot db upgrade` leaves it
        loop = LoopThread()
        h = start_harness(engine, settings, loop)
        try:
            rows = upper_case_tags(h) + smtp_attacks(h) + xml_attacks()
        finally:
            loop.run(h.gateway.stop(grace=5))
            loop.close()
            engine.dispose()
    print("| attack | what mailbot did | replies | reply sizes (raw, as queued) | worker time |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row.attack} | {row.outcome} | {row.replies} | {row.sizes} | {row.seconds:.2f} s |"
        )


if __name__ == "__main__":
    main()
