"""``python -m scheduler``: the scheduler on its own, for a process that only schedules.

    python -m scheduler run [--apply-time 00:00] [--sweep-seconds 60] [--reminder-time 09:00]
                            [--poll-seconds 15]
    python -m scheduler apply-due [--as-of YYYY-MM-DD] [--dry-run] [--json] [--batch N]
                                  [--apply-time ..]
    python -m scheduler jobs [--json] [--apply-time ..]

Same settings (``MAILBOT_*``) and database as ``mailbot``; the scheduler's own settings are
options here. ``run`` takes part in the leader election like ``serve`` does, so it may run
beside any number of ``serve`` processes. The whole-process tests drive it too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, time

from sqlalchemy.exc import SQLAlchemyError

from db.migrate import upgrade
from mailbot.applying import DEFAULT_BATCH, apply_due, format_report
from mailbot.config import load_settings
from mailbot.errors import MailbotError
from mailbot.keys import ensure_signing_key
from mailbot.logs import configure_logging
from mailbot.runtime import Runtime
from scheduler.config import ScheduleConfig, parse_clock_time
from scheduler.listing import format_jobs, jobs_as_dict, list_scheduled
from scheduler.service import run_scheduler


def _config(args: argparse.Namespace, retention_time: time) -> ScheduleConfig:
    return ScheduleConfig(
        apply_time=parse_clock_time(args.apply_time),
        sweep_seconds=args.sweep_seconds,
        reminder_time=parse_clock_time(args.reminder_time),
        retention_time=retention_time,
        leader_poll_seconds=args.poll_seconds,
    )


async def _run(rt: Runtime, config: ScheduleConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger("scheduler").info("scheduler process started")
    await run_scheduler(rt.engine, rt.settings, stop, config=config, calendar=rt.calendar)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scheduler", description=__doc__)
    parser.add_argument("command", choices=["run", "apply-due", "jobs"])
    parser.add_argument("--apply-time", default="00:00")
    parser.add_argument("--sweep-seconds", type=float, default=60.0)
    parser.add_argument("--reminder-time", default="09:00")
    parser.add_argument("--poll-seconds", type=float, default=15.0)
    parser.add_argument("--as-of", type=date.fromisoformat, default=None)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--batch", type=int, default=DEFAULT_BATCH, help="applications per transaction"
    )
    args = parser.parse_args(argv)
    rt = Runtime(load_settings())
    configure_logging(rt.settings.log_level, rt.settings.log_format, rt.settings.zone)
    try:
        config = _config(args, rt.settings.retention_time)
        if args.command == "run":
            upgrade(rt.engine)
            ensure_signing_key(rt.engine, rt.settings)  # as serve does: reminders carry links
            asyncio.run(_run(rt, config))
            return 0
        now = datetime.now(UTC)
        if args.command == "apply-due":
            report = apply_due(
                rt.engine,
                rt.settings,
                now,
                apply_time=config.apply_time,
                dry_run=args.dry_run,
                through=args.as_of,
                batch_size=args.batch,
                via="cli",
            )
            print(
                json.dumps(report.as_dict(), ensure_ascii=False)
                if args.json
                else format_report(report)
            )
            return 1 if report.failed else 0
        with rt.session() as session:
            rows, stale = list_scheduled(session, rt.settings.zone, config.apply_time, now)
        print(
            json.dumps(jobs_as_dict(rows, stale), ensure_ascii=False)
            if args.json
            else format_jobs(rows, stale)
        )
        return 0
    except (MailbotError, ValueError) as exc:
        print(f"scheduler: {exc}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, MailbotError) else 2
    except SQLAlchemyError as exc:  # e.g. a database not upgraded yet: one line, no traceback
        print(f"scheduler: database error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        rt.close()


if __name__ == "__main__":
    sys.exit(main())
