"""``mailbot staff``: the staff members who review applications."""

from __future__ import annotations

import click

from mailbot.cli.common import emit, json_option, runtime


@click.group()
def staff() -> None:
    """Staff members who review applications."""


@staff.command("add")
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.pass_context
def staff_add(ctx: click.Context, email: str, name: str) -> None:
    from mailbot.staff import add_staff

    with runtime(ctx).session() as session:
        member = add_staff(session, email, name)
    click.echo(f"staff {member.email} active")


@staff.command("remove")
@click.argument("email")
@click.pass_context
def staff_remove(ctx: click.Context, email: str) -> None:
    """Deactivate a member: their tokens stop working at once."""
    from mailbot.staff import remove_staff

    with runtime(ctx).session() as session:
        member = remove_staff(session, email)
    click.echo(f"staff {member.email} removed")


@staff.command("list")
@click.option("--all", "include_inactive", is_flag=True, help="Include removed members.")
@json_option
@click.pass_context
def staff_list(ctx: click.Context, include_inactive: bool, as_json: bool) -> None:
    from mailbot.staff import list_staff

    with runtime(ctx).session() as session:
        members = list_staff(session, include_inactive=include_inactive)
        data = [{"email": m.email, "name": m.name, "active": m.active} for m in members]
    emit(
        data,
        as_json,
        lambda rows: (
            "\n".join(
                f"{r['email']}\t{r['name']}\t{'active' if r['active'] else 'removed'}" for r in rows
            )
            or "(no staff)"
        ),
    )
