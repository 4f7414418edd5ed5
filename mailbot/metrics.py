"""``/metrics``: the Prometheus text format (prometheus_client), served by the ``web`` role.

Two kinds of metric, told apart by what they describe:

* **Database gauges** (``mailbot_inbound_messages``, ``mailbot_outbox_messages``, …) are read
  from the database at each scrape, so every process on one database reports the same values.
  With several processes, scrape them all and aggregate with ``max without (instance)`` (see
  docs/operations.md, Monitoring), or scrape one.
* **Process metrics** describe the process that answers: its parts (``mailbot_part_up``), the
  scheduler lead, the IMAP reader's last success, how long the SMTP gateway took to answer
  ``250`` (``mailbot_smtp_store_seconds``, observed by mailbot.gateway.smtp), and the standard
  ``process_*`` and ``python_*`` metrics.

A scrape that cannot read the database still answers, with ``mailbot_database_up 0`` and the
process metrics: the monitor learns that the database is the problem.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from db.models import APPLICATION_STATUSES, INBOUND_STATUSES
from mailbot.clock import Clock
from mailbot.facts import QueueFacts, read_facts
from mailbot.monitor import LEADER, OK_STATES, Monitor

log = logging.getLogger(__name__)

# How long the gateway took from the end of DATA to its answer: 250 once the raw bytes are
# committed, or 451 when they could not be.
SMTP_STORE_SECONDS = Histogram(
    "mailbot_smtp_store_seconds",
    "Seconds from the end of a message's DATA to the gateway's reply (250: stored and "
    "committed; 451: not stored), by reply code.",
    labelnames=["reply"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=None,  # registered in each app's registry (make_registry)
)
# Both replies exist from the start, so that a first 451 is a change a rate() can see.
for _reply in ("250", "451"):
    SMTP_STORE_SECONDS.labels(reply=_reply)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def observe_smtp_store(reply: str, seconds: float) -> None:
    SMTP_STORE_SECONDS.labels(reply=reply[:3]).observe(seconds)


class DatabaseCollector(Collector):
    """Gauges read from the database at each scrape (the same from every process)."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "mailbot_database_up", "1 when the database answered this scrape, else 0."
        )
        try:
            facts = read_facts(self.engine)
        except Exception as exc:  # the scrape must still answer, and say so
            log.warning("metrics: cannot read the database: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from self._gauges(facts, self.clock())

    @staticmethod
    def _gauges(facts: QueueFacts, now: datetime) -> Iterator[Metric]:
        inbound = GaugeMetricFamily(
            "mailbot_inbound_messages", "Received messages by status.", labels=["status"]
        )
        for status in INBOUND_STATUSES:
            inbound.add_metric([status], facts.inbound.get(status, 0))
        yield inbound
        yield _gauge(
            "mailbot_inbound_oldest_waiting_seconds",
            "Age of the oldest message waiting to be processed (0 when none waits).",
            facts.waiting_seconds(now) or 0.0,
        )
        yield _gauge(
            "mailbot_quarantine_bytes",
            "Size of the quarantined messages (their raw bytes, kept until handled).",
            facts.quarantined_bytes,
        )
        yield _gauge(
            "mailbot_inbound_raw_removed_messages",
            "Processed messages whose raw bytes retention has removed.",
            facts.raw_removed,
        )
        outbox = GaugeMetricFamily(
            "mailbot_outbox_messages",
            "Outgoing mail by status (sent: delivered to the relay; bounced: a delivery report "
            "came back; failed: given up) and kind.",
            labels=["status", "kind"],
        )
        for (status, kind), count in sorted(facts.outbox.items()):
            outbox.add_metric([status, kind], count)
        yield outbox
        yield _gauge(
            "mailbot_outbox_oldest_unsent_seconds",
            "Age of the oldest notice not yet delivered, since it was (re)queued (0: none).",
            facts.unsent_seconds(now) or 0.0,
        )
        applications = GaugeMetricFamily(
            "mailbot_applications", "Applications by status.", labels=["status"]
        )
        for status in APPLICATION_STATUSES:
            applications.add_metric([status], facts.applications.get(status, 0))
        yield applications
        receipts = GaugeMetricFamily(
            "mailbot_receipt_numbers_issued", "Receipt numbers issued, by year.", labels=["year"]
        )
        for year, issued in sorted(facts.receipts.items()):
            receipts.add_metric([str(year)], issued)
        yield receipts
        yield _gauge(
            "mailbot_abolished_user_ids",
            "User IDs abolished by applied changes.",
            facts.abolished_ids,
        )


class ProcessPartsCollector(Collector):
    """What this process's parts say about themselves (mailbot.monitor)."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "mailbot_part_up",
            "1 when a part this process runs is up (its own view; /healthz checks more).",
            labels=["part"],
        )
        for name, part in self.monitor.parts.items():
            up.add_metric([name], 1 if part.current in OK_STATES else 0)
        yield up
        if "scheduler" in self.monitor:
            leads = self.monitor.part("scheduler").current == LEADER
            yield _gauge(
                "mailbot_scheduler_leader",
                "1 when this process runs the scheduler (holds the leader lock).",
                1 if leads else 0,
            )
        if "imap" in self.monitor:
            imap = self.monitor.part("imap")
            yield _gauge(
                "mailbot_imap_last_success_timestamp_seconds",
                "When the IMAP reader last went over its folder (Unix time; 0: never).",
                imap.last_success.timestamp() if imap.last_success else 0.0,
            )


def make_registry(engine: Engine, monitor: Monitor, clock: Clock) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(engine, clock))
    registry.register(ProcessPartsCollector(monitor))
    registry.register(SMTP_STORE_SECONDS)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
