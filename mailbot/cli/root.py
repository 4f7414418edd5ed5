"""The ``mailbot`` command: its group, the commands of every module of :mod:`mailbot.cli`, and
:func:`main`, the console entry point, where errors become one line and an exit code.

Exit codes are the operators' contract: 0 ok, 1 refused or not found, 2 bad usage or settings.
Errors from mailbot print as one line without a traceback.
"""

from __future__ import annotations

import os
import sys

import click
from sqlalchemy.exc import DBAPIError

from mailbot.cli.applications import (
    apply_due_command,
    approve,
    cancel,
    list_command,
    reject,
    status,
)
from mailbot.cli.config import config
from mailbot.cli.database import db
from mailbot.cli.demo import demo
from mailbot.cli.documents import document, form
from mailbot.cli.ids import ids
from mailbot.cli.imap import imap
from mailbot.cli.inbound import inbound
from mailbot.cli.keys import keys
from mailbot.cli.outbox import outbox
from mailbot.cli.registry import registry
from mailbot.cli.schedule import schedule
from mailbot.cli.serve import ingest, serve
from mailbot.cli.staff import staff
from mailbot.config import load_settings
from mailbot.errors import MailbotError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mailbot")
def cli() -> None:
    """mailbot: NACCS user-ID abolition requests by email (利用者IDの廃止申込)."""


# Each module holds one command group, or the commands about one thing; `--help` lists them all
# in alphabetical order, wherever they are added here.
for command in (
    db,
    keys,
    registry,
    schedule,
    staff,
    ids,
    status,
    list_command,
    approve,
    reject,
    apply_due_command,
    cancel,
    ingest,
    inbound,
    outbox,
    imap,
    form,
    document,
    demo,
    config,
    serve,
):
    cli.add_command(command)


def _schema_behind() -> str | None:
    """After a database error: if the schema is not this version's, what to do about it."""
    from db.engine import make_engine
    from db.migrate import current_revision, head_revision

    try:
        engine = make_engine(load_settings().database_url)
        try:
            current = current_revision(engine)
        finally:
            engine.dispose()
    except Exception:  # the database itself is the problem; say that instead
        return None
    head = head_revision()
    if current == head:
        return None
    found = f"at revision {current}" if current else "without mailbot's tables"
    return (
        f"the database is {found}, and this mailbot needs revision {head}: "
        "run `mailbot db upgrade` (serve does it too)"
    )


def _database_failure(exc: DBAPIError) -> str:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    return f"database error: {reason} (set MAILBOT_DEBUG=1 to see the traceback)"


def main(argv: list[str] | None = None) -> None:
    try:
        result = cli.main(args=argv, prog_name="mailbot", standalone_mode=False)
        # Without standalone mode click returns ctx.exit()'s code instead of exiting.
        sys.exit(result if isinstance(result, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except MailbotError as exc:
        click.echo(f"mailbot: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except DBAPIError as exc:
        not_upgraded = _schema_behind()
        if not_upgraded is None and os.environ.get("MAILBOT_DEBUG"):
            raise
        click.echo(f"mailbot: {not_upgraded or _database_failure(exc)}", err=True)
        sys.exit(1)
    except Exception as exc:  # the boundary: an operator gets one line, not a traceback
        if os.environ.get("MAILBOT_DEBUG"):
            raise
        click.echo(
            f"mailbot: unexpected error: {type(exc).__name__}: {exc} "
            "(set MAILBOT_DEBUG=1 to see the traceback)",
            err=True,
        )
        sys.exit(1)
