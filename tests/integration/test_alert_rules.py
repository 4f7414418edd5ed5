"""The example alert rules in deploy/prometheus-alerts.yml: valid for Prometheus (promtool
check rules), each one firing on the series it is meant for and silent on a healthy mailbot
(promtool test rules), and written against metrics mailbot's /metrics really has, in a form
Prometheus accepts (promtool check metrics)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from mailbot.metrics import make_registry, observe_smtp_store, render
from mailbot.monitor import Monitor

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus-alerts.yml"
ROLES = ("smtp", "worker", "outbox", "scheduler", "web", "imap")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: make system-deps installs the Debian package prometheus")
    return found


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_rules_are_valid() -> None:
    checked = run("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 12 rules found" in checked.stdout


FIRING = """
  - name: each alert fires on what it watches
    interval: 1m
    input_series:
      - series: 'up{job="mailbot",instance="a:8080"}'
        values: '0x40'
      - series: 'mailbot_database_up{instance="a:8080"}'
        values: '0x40'
      - series: 'mailbot_part_up{instance="a:8080",part="imap"}'
        values: '0x40'
      - series: 'mailbot_inbound_oldest_waiting_seconds{instance="a:8080"}'
        values: '900x40'
      - series: 'mailbot_inbound_oldest_waiting_seconds{instance="b:8080"}'
        values: '900x40'
      - series: 'mailbot_inbound_messages{instance="a:8080",status="quarantined"}'
        values: '2x40'
      - series: 'mailbot_inbound_messages{instance="b:8080",status="quarantined"}'
        values: '2x40'
      - series: 'mailbot_outbox_oldest_unsent_seconds{instance="a:8080"}'
        values: '2000x40'
      - series: 'mailbot_outbox_messages{instance="a:8080",status="failed",kind="receipt_complete"}'
        values: '1x40'
      - series: 'mailbot_outbox_messages{instance="b:8080",status="failed",kind="receipt_complete"}'
        values: '1x40'
      - series: 'mailbot_outbox_messages{instance="a:8080",status="failed",kind="applied"}'
        values: '2x40'
      - series: 'mailbot_scheduler_leader{instance="a:8080"}'
        values: '0x40'
      - series: 'mailbot_scheduler_leader{instance="b:8080"}'
        values: '0x40'
      - series: 'mailbot_imap_last_success_timestamp_seconds{instance="a:8080"}'
        values: '0x40'
      - series: 'mailbot_smtp_store_seconds_count{instance="a:8080",reply="451"}'
        values: '0+1x40'
      - series: 'mailbot_smtp_store_seconds_bucket{instance="a:8080",reply="250",le="5.0"}'
        values: '0x40'
      - series: 'mailbot_smtp_store_seconds_bucket{instance="a:8080",reply="250",le="10.0"}'
        values: '0+1x40'
      - series: 'mailbot_smtp_store_seconds_bucket{instance="a:8080",reply="250",le="+Inf"}'
        values: '0+1x40'
    alert_rule_test:
      - eval_time: 6m
        alertname: MailbotDown
        exp_alerts:
          - exp_labels: {severity: critical, job: mailbot, instance: "a:8080"}
            exp_annotations:
              summary: "mailbot process a:8080 does not answer /metrics"
      - eval_time: 3m
        alertname: MailbotDatabaseDown
        exp_alerts:
          - exp_labels: {severity: critical, instance: "a:8080"}
            exp_annotations:
              summary: "mailbot at a:8080 cannot read its database"
      - eval_time: 6m
        alertname: MailbotPartDown
        exp_alerts:
          - exp_labels: {severity: critical, instance: "a:8080", part: imap}
            exp_annotations:
              summary: "mailbot part imap is down at a:8080"
              description: "See /healthz of that process and its log; IMAP: check the server and the password (mailbot imap check)."
      - eval_time: 6m
        alertname: MailbotIntakeStuck
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "a stored message has waited 15m 0s to be processed"
              description: "No worker is draining the queue: is a process with the worker role running?"
      - eval_time: 1m
        alertname: MailbotQuarantine
        exp_alerts:
          - exp_labels: {severity: warning, status: quarantined}
            exp_annotations:
              summary: "2 message(s) quarantined"
              description: "mailbot inbound list --status quarantined; fix the cause, then mailbot inbound reprocess --quarantined"
      - eval_time: 6m
        alertname: MailbotNoticesDelayed
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: "a notice has waited 33m 20s to be delivered"
              description: "The relay refuses or is unreachable (mailbot outbox list --status pending shows the last error); notices are retried for MAILBOT_OUTBOX_GIVE_UP_HOURS."
      - eval_time: 1m
        alertname: MailbotNoticesFailed
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "3 notice(s) given up"
              description: "mailbot outbox list --status failed; once the relay works: mailbot outbox retry --failed"
      - eval_time: 6m
        alertname: MailbotNoScheduler
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "no mailbot process runs the scheduler: start dates are not applied"
      - eval_time: 30m
        alertname: MailbotImapStale
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "mailbot has not read its IMAP mailbox for 30m 0s"
      - eval_time: 25m
        alertname: MailbotSmtpTempfail
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: "the SMTP gateway answers 451: it cannot store mail (database)"
      - eval_time: 30m
        alertname: MailbotSmtpSlow
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: "99% of messages take up to 9.95s to be answered 250"

  - name: bounces of the last day
    interval: 1h
    input_series:
      - series: 'mailbot_outbox_messages{instance="a:8080",status="bounced",kind="receipt_complete"}'
        values: '0x24 2x4'
    alert_rule_test:
      - eval_time: 12h
        alertname: MailbotNoticesBounced
        exp_alerts: []
      - eval_time: 26h
        alertname: MailbotNoticesBounced
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: "2 notice(s) bounced in the last day"
              description: "mailbot outbox list --status bounced: an applicant's or manager's address no longer works."
"""

HEALTHY = """
  - name: a healthy mailbot raises nothing
    interval: 1m
    input_series:
      - series: 'up{job="mailbot",instance="a:8080"}'
        values: '1x40'
      - series: 'mailbot_database_up{instance="a:8080"}'
        values: '1x40'
      - series: 'mailbot_part_up{instance="a:8080",part="imap"}'
        values: '1x40'
      - series: 'mailbot_inbound_oldest_waiting_seconds{instance="a:8080"}'
        values: '0 3 0 0 1 0x35'
      - series: 'mailbot_inbound_messages{instance="a:8080",status="quarantined"}'
        values: '0x40'
      - series: 'mailbot_outbox_oldest_unsent_seconds{instance="a:8080"}'
        values: '0 2 0x38'
      - series: 'mailbot_outbox_messages{instance="a:8080",status="failed",kind="receipt_complete"}'
        values: '0x40'
      - series: 'mailbot_outbox_messages{instance="a:8080",status="bounced",kind="receipt_complete"}'
        values: '1x40'
      - series: 'mailbot_scheduler_leader{instance="a:8080"}'
        values: '1x40'
      - series: 'mailbot_scheduler_leader{instance="b:8080"}'
        values: '0x40'
      - series: 'mailbot_imap_last_success_timestamp_seconds{instance="a:8080"}'
        values: '0+60x40'
      - series: 'mailbot_smtp_store_seconds_count{instance="a:8080",reply="451"}'
        values: '0x40'
      - series: 'mailbot_smtp_store_seconds_bucket{instance="a:8080",reply="250",le="0.05"}'
        values: '0+10x40'
      - series: 'mailbot_smtp_store_seconds_bucket{instance="a:8080",reply="250",le="+Inf"}'
        values: '0+10x40'
    alert_rule_test:
""" + "".join(
    f"""      - eval_time: 35m
        alertname: {name}
        exp_alerts: []
"""
    for name in (
        "MailbotDown",
        "MailbotDatabaseDown",
        "MailbotPartDown",
        "MailbotIntakeStuck",
        "MailbotQuarantine",
        "MailbotNoticesDelayed",
        "MailbotNoticesFailed",
        "MailbotNoticesBounced",
        "MailbotNoScheduler",
        "MailbotImapStale",
        "MailbotSmtpTempfail",
        "MailbotSmtpSlow",
    )
)


def test_each_rule_fires_on_its_trouble_and_none_on_a_healthy_mailbot(tmp_path: Path) -> None:
    tests = tmp_path / "alerts-test.yml"
    tests.write_text(
        f"rule_files:\n  - {RULES}\nevaluation_interval: 1m\ntests:\n{FIRING}{HEALTHY}"
    )
    result = run("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def scrape(engine: Engine) -> str:
    monitor = Monitor(ROLES)
    observe_smtp_store("250 2.0.0 Ok: stored as 1", 0.01)
    return render(make_registry(engine, monitor, lambda: datetime.now(UTC))).decode()


def test_the_rules_use_metrics_that_mailbot_exports(engine: Engine) -> None:
    exported: set[str] = set()
    for family in text_string_to_metric_families(scrape(engine)):
        exported.update(sample.name for sample in family.samples)
        exported.add(family.name)
    rules = "\n".join(
        line for line in RULES.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    used = set(re.findall(r"\bmailbot_[a-z_]+", rules))
    assert used, "no mailbot metric in the rules"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_metrics_pass_promtool_s_lint(engine: Engine) -> None:
    linted = run("check", "metrics", stdin=scrape(engine).encode())
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_scrape_configuration_in_the_docs_is_valid(tmp_path: Path) -> None:
    """docs/operations.md's Prometheus configuration, with its rule file pointing at ours."""
    doc = (RULES.parents[1] / "docs" / "operations.md").read_text()
    marker = "<!-- monitoring-test: prometheus.yml -->\n```yaml\n"
    start = doc.index(marker) + len(marker)
    config = doc[start : doc.index("```", start)]
    assert "/etc/prometheus/mailbot-alerts.yml" in config
    rules = tmp_path / "mailbot-alerts.yml"
    rules.write_bytes(RULES.read_bytes())
    written = tmp_path / "prometheus.yml"
    written.write_text(config.replace("/etc/prometheus/mailbot-alerts.yml", str(rules)))
    checked = run("check", "config", str(written))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 12 rules found" in checked.stdout
