"""``mailbot demo``: demo data for trying mailbot out."""

from __future__ import annotations

import click

from mailbot.cli.common import runtime
from mailbot.errors import MailbotError


@click.group()
def demo() -> None:
    """Demo data for trying mailbot out (used by `make run`)."""


@demo.command("init")
@click.pass_context
def demo_init(ctx: click.Context) -> None:
    """Load the demo registry, an upcoming schedule and a staff member, if the registry is empty."""
    from mailbot.demo import init_demo

    rt = runtime(ctx)
    with rt.session() as session:
        loaded = init_demo(session, rt.today(), rt.calendar)
    click.echo("demo data loaded" if loaded else "registry already has data; demo data not loaded")


@demo.command("howto")
@click.pass_context
def demo_howto(ctx: click.Context) -> None:
    """Print how to send the running mailbot a request."""
    from mailbot.demo import howto

    click.echo(howto(runtime(ctx).settings))


@demo.command("send")
@click.pass_context
def demo_send(ctx: click.Context) -> None:
    """Send the running mailbot a demo request from yamada@example.co.jp (demo registry)."""
    from mailbot.demo import demo_request, send_demo_request

    rt = runtime(ctx)
    try:
        send_demo_request(rt.settings, demo_request(rt.settings, rt.today(), rt.calendar))
    except OSError as exc:
        raise MailbotError(
            f"cannot reach mailbot at {rt.settings.smtp_address} ({exc}); is `make run` running?"
        ) from None
    click.echo(f"demo request sent to {rt.settings.intake_address}; see: mailbot outbox list")
