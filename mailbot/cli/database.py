"""``mailbot db``: the database schema and its backup."""

from __future__ import annotations

from pathlib import Path

import click

from mailbot.cli.common import runtime


@click.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate the tables to the current version."""
    from db.migrate import current_revision, upgrade
    from mailbot.keys import ensure_signing_key

    rt = runtime(ctx)
    upgrade(rt.engine)
    click.echo(f"database at revision {current_revision(rt.engine)}")
    click.echo(ensure_signing_key(rt.engine, rt.settings))


@db.command("backup")
@click.argument("path", type=click.Path(path_type=Path))
@click.pass_context
def db_backup(ctx: click.Context, path: Path) -> None:
    """Copy the SQLite database (and the signing keys in it) to PATH while mailbot runs."""
    from mailbot.backup import backup_database

    made = backup_database(runtime(ctx).engine, path)
    click.echo(f"backed up to {made.path} ({made.size_bytes} bytes, integrity checked)")
