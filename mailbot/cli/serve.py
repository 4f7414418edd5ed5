"""``mailbot serve`` runs mailbot's long-running parts; ``mailbot ingest`` stores one message
for a mail server's pipe."""

from __future__ import annotations

from typing import Any

import click

from mailbot.cli.common import runtime


@click.command()
@click.option(
    "--only",
    metavar="ROLE[,ROLE…]",
    help="Run only these parts: smtp, worker, outbox, scheduler, web, imap (default: all; "
    "imap when MAILBOT_IMAP_URL is set). Processes with any roles may share one database.",
)
@click.pass_context
def serve(ctx: click.Context, only: str | None) -> None:
    """Run mailbot: upgrade the database, then receive, process and send mail until stopped."""
    from mailbot.app import parse_roles
    from mailbot.app import serve as run_serve

    roles = None if only is None else parse_roles(only)  # a typo is refused before anything runs
    run_serve(runtime(ctx), roles)


@click.command()
@click.argument("file", default="-", type=click.File("rb"))
@click.option("--sender", default=None, help="Envelope sender (Postfix ${sender}).")
@click.option("--recipient", "recipients", multiple=True, help="Envelope recipient(s).")
@click.pass_context
def ingest(ctx: click.Context, file: Any, sender: str | None, recipients: tuple[str, ...]) -> None:
    """Store one message from FILE or stdin (for a mail server's pipe). Exit 0 once stored,
    75 (EX_TEMPFAIL) when it could not be stored, so the mail server retries."""
    from mailbot.gateway.pipe import EX_TEMPFAIL, ingest_stream

    try:
        rt = runtime(ctx)
        code = ingest_stream(
            rt.engine,
            file,
            settings=rt.settings,
            envelope_from=sender,
            envelope_to=list(recipients) or [rt.settings.intake_address],
        )
    except Exception as exc:  # a broken set-up must defer the mail, never bounce or lose it
        click.echo(f"mailbot: cannot store the message, retry later: {exc}", err=True)
        code = EX_TEMPFAIL
    ctx.exit(code)
