"""``mailbot imap``: the IMAP mailbox mailbot reads."""

from __future__ import annotations

import click

from mailbot.cli.common import emit, json_option, runtime


@click.group()
def imap() -> None:
    """The IMAP mailbox mailbot reads (MAILBOT_IMAP_URL)."""


@imap.command("check")
@json_option
@click.pass_context
def imap_check(ctx: click.Context, as_json: bool) -> None:
    """Log in, show the folder and its counts; exit non-zero with the server's reason."""
    from dataclasses import asdict

    from mailbot.gateway.imap import check_mailbox

    result = check_mailbox(runtime(ctx).settings)
    emit(asdict(result), as_json, lambda _: "\n".join(result.lines()))
