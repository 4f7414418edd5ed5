"""``mailbot keys``: the keys that sign links and reply addresses."""

from __future__ import annotations

from typing import Any

import click

from mailbot.cli.common import emit, in_zone, json_option, runtime
from mailbot.runtime import Runtime


@click.group()
def keys() -> None:
    """The keys that sign links and reply addresses (kept in the database; never shown)."""


@keys.command("rotate")
@json_option
@click.pass_context
def keys_rotate(ctx: click.Context, as_json: bool) -> None:
    """Make a new current key; old keys verify until what they signed has expired."""
    from mailbot.clock import utc_now
    from mailbot.keys import rotate

    rt = runtime(ctx)
    now = utc_now()
    described = rotate(rt.engine, rt.settings, now)
    _keys_override_note(rt)
    old = [_zoned_key(k.as_dict(now), rt) for k in described[1:] if k.verifies(now)]
    emit({"current": described[0].id, "verifying": old}, as_json, _format_rotation)


def _format_rotation(data: dict[str, Any]) -> str:
    lines = [f"key {data['current']} is now the current key (new links and replies use it)"]
    for k in data["verifying"]:
        lines.append(f"key {k['id']} still verifies until {k['verifies_until']}")
    return "\n".join(lines)


@keys.command("revoke")
@click.argument("key_id", type=int)
@click.option(
    "--yes",
    is_flag=True,
    help="Confirm: the links and reply addresses this key signed stop working.",
)
@json_option
@click.pass_context
def keys_revoke(ctx: click.Context, key_id: int, yes: bool, as_json: bool) -> None:
    """Revoke a key that leaked: it verifies nothing from now on (a new key signs if it was the
    current one). Links and reply addresses it signed stop working."""
    from mailbot.clock import utc_now
    from mailbot.keys import revoke

    if not yes:
        raise click.UsageError(
            f"revoking key {key_id} stops every link and reply address it signed from working "
            "(applicants' status links, staff's pending review replies); add --yes to do it"
        )
    rt = runtime(ctx)
    now = utc_now()
    done = revoke(rt.engine, rt.settings, key_id, now)
    _keys_override_note(rt)
    emit(
        {
            "revoked": done.revoked,
            "already": done.already,
            "was_current": done.was_current,
            "current": done.keys[0].id,
            "reply_tokens_lost": done.reply_tokens_lost,
        },
        as_json,
        _format_revocation,
    )


def _format_revocation(data: dict[str, Any]) -> str:
    from mailbot.keys import RELOAD_SECONDS

    if data["already"]:
        return f"key {data['revoked']} was already revoked: nothing changed"
    lines = [
        f"key {data['revoked']} is revoked: nothing it signed verifies any more "
        f"({data['reply_tokens_lost']} open reply addresses stopped working, and its links)"
    ]
    if data["was_current"]:
        lines.append(f"key {data['current']} is now the current key (new links and replies use it)")
    lines.append(
        f"running processes stop accepting it within {RELOAD_SECONDS:.0f} s; staff decide what "
        "still waits in the staff console (/staff) or an operator with `mailbot approve` / "
        "`mailbot reject`"
    )
    return "\n".join(lines)


@keys.command("list")
@json_option
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool) -> None:
    """Every key: id, created, age, current, retired or revoked, until when it verifies."""
    from mailbot.clock import utc_now
    from mailbot.keys import describe

    rt = runtime(ctx)
    now = utc_now()
    with rt.session() as session:
        described = [_zoned_key(k.as_dict(now), rt) for k in describe(session, rt.settings)]
    _keys_override_note(rt)
    emit(described, as_json, _format_keys)


def _zoned_key(key: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    times = ("created_at", "retired_at", "verifies_until")
    return {
        name: in_zone(value, rt.settings.zone) if name in times else value
        for name, value in key.items()
    }


def _format_keys(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no signing keys: run `mailbot db upgrade`"
    lines = [f"{'id':>4}  {'created':<25}  {'age (days)':>10}  {'state':<8}  verifies until"]
    for k in rows:
        until = k["verifies_until"] or "-"
        if not k["verifies"]:
            until += " (no longer)"
        lines.append(
            f"{k['id']:>4}  {k['created_at']:<25}  {k['age_days']:>10}  {k['state']:<8}  {until}"
        )
    return "\n".join(lines)


def _keys_override_note(rt: Runtime) -> None:
    if rt.settings.secret_key is not None:
        click.echo(
            "note: MAILBOT_SECRET_KEY is set, so it alone signs and verifies; these keys are "
            "used once it is removed",
            err=True,
        )
