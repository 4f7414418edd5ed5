"""``run_scheduler``: the scheduler's part of ``mailbot serve`` (the ``scheduler`` role).

Every process runs this loop; only the one holding the leader lock runs the scheduler. The
others poll for the lock and take over when the leader dies. Leading means: catch up first
(apply what came due while nobody led, send today's reminders if their time has passed), then
start APScheduler with the sweep, the reminder cron job and the persisted date jobs, and check
the lock every poll until told to stop or the lock is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine

from mailbot.calendar import BusinessCalendar
from mailbot.clock import Clock, utc_now
from mailbot.config import Settings
from mailbot.monitor import FAILING, LEADER, STANDBY
from scheduler.config import ScheduleConfig
from scheduler.jobs import JobContext, bind, catch_up, unbind
from scheduler.leader import LeaderLock, leader_lock_for
from scheduler.setup import add_service_jobs, build_scheduler

JOB_STOP_GRACE_SECONDS = 30.0
Report = Callable[[str], None]


def _ignore(state: str) -> None:
    pass


log = logging.getLogger(__name__)


async def run_scheduler(
    engine: Engine,
    settings: Settings,
    stop: asyncio.Event,
    *,
    config: ScheduleConfig,
    calendar: BusinessCalendar | None = None,
    clock: Clock = utc_now,
    lock: LeaderLock | None = None,
    report: Report = _ignore,
) -> None:
    """Lead the scheduler whenever this process holds the lock, until ``stop`` is set.

    ``report`` hears ``leader``, ``standby`` or ``failing`` at every check (for /healthz)."""
    context = JobContext(
        engine=engine,
        settings=settings,
        config=config,
        calendar=calendar or BusinessCalendar(),
        clock=clock,
    )
    leader = lock or leader_lock_for(engine)
    announced = False
    try:
        while not stop.is_set():
            try:
                if await asyncio.to_thread(leader.try_acquire):
                    log.info(
                        "scheduler: this process holds the scheduler lock and runs the scheduler"
                    )
                    announced = False
                    report(LEADER)
                    await _lead(context, leader, stop, report)
                    await asyncio.to_thread(leader.release)
                else:
                    report(STANDBY)
                    if not announced:
                        log.info("scheduler: another process runs the scheduler; standing by")
                        announced = True
            except Exception:  # the loop boundary: the rest of serve keeps running
                report(FAILING)
                log.exception(
                    "scheduler: failed; trying again in %.0f s", config.leader_poll_seconds
                )
                await asyncio.to_thread(leader.release)
            await _sleep(stop, config.leader_poll_seconds)
    finally:
        await asyncio.to_thread(leader.release)


async def _lead(
    context: JobContext, leader: LeaderLock, stop: asyncio.Event, report: Report
) -> None:
    bind(context)
    scheduler: AsyncIOScheduler | None = None
    try:
        try:
            await asyncio.to_thread(catch_up, context)
        except Exception:  # the sweep retries within a minute; keep leading
            log.exception("scheduler: catch-up at start failed")
        scheduler = build_scheduler(context.engine, context.settings.zone)
        scheduler.start()
        add_service_jobs(scheduler, context)
        poll = context.config.leader_poll_seconds
        while not stop.is_set():
            await _sleep(stop, poll)
            if stop.is_set():
                break
            if not await _still_held(leader, timeout=poll):
                log.error("scheduler: lost the scheduler lock; stopping the scheduler here")
                report(STANDBY)
                break
            report(LEADER)
    finally:
        if scheduler is not None and scheduler.running:
            # No job starts anew; jobs already running in threads finish their transaction
            # first. AsyncIOExecutor.shutdown would cancel their futures (and APScheduler logs
            # that as a job error), so wait for them before shutting down.
            scheduler.pause()
            running = list(getattr(scheduler._executors["default"], "_pending_futures", ()))
            if running:
                await asyncio.wait(running, timeout=JOB_STOP_GRACE_SECONDS)
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler shuts down in a loop callback
        unbind()


async def _still_held(leader: LeaderLock, *, timeout: float) -> bool:
    try:
        return await asyncio.wait_for(asyncio.to_thread(leader.still_held), timeout)
    except TimeoutError:
        return False


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
