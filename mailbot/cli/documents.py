"""``mailbot form`` and ``mailbot document``: the blank form, an application's PDFs."""

from __future__ import annotations

from pathlib import Path

import click

from mailbot.cli.common import runtime


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["xlsx", "csv", "csv-table", "text"]),
    default="xlsx",
    show_default=True,
    help="csv: vertical form (label, value); csv-table: one row per user ID.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def form(fmt: str, output: Path | None) -> None:
    """Write the blank request form applicants fill in (to FILE, or its own name)."""
    from mailbot.blank_form import write_blank_form

    filename, _content_type, data = write_blank_form(fmt)  # type: ignore[arg-type]
    target = output or Path(filename)
    target.write_bytes(data)
    click.echo(f"wrote {target}")


@click.command()
@click.argument("kind", type=click.Choice(["approval-notice", "application-form"]))
@click.argument("receipt_no")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the PDF.",
)
@click.pass_context
def document(ctx: click.Context, kind: str, receipt_no: str, output: Path) -> None:
    """Write an application's approval notice (from its start date on) or form as PDF."""
    from mailbot.clock import utc_now
    from mailbot.documents import document_context, produce_document

    rt = runtime(ctx)
    with rt.session() as session:
        context = document_context(session, receipt_no, rt.settings)
    output.write_bytes(produce_document(kind, context, utc_now()))
    click.echo(f"{output}: {kind} of {context.receipt_no}")
