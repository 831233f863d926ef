"""deploy/prometheus: the alert rules pass promtool's checks and unit tests, use only metrics the
worker exports, and each has a runbook in docs/operations.md."""

import re

import pytest

from tests.deploy.manifests import load_yaml
from tests.deploy.promql import metric_names
from tests.deploy.tools import DEPLOY, REPO, run_tool
from tests.deploy.worker_facts import metric_sample_names

RULES = DEPLOY / "prometheus"
ALERTS = RULES / "alerts.yaml"
# Metrics of other exporters the rules rely on: Prometheus itself and kube-state-metrics.
EXTERNAL_METRICS = {
    "up",
    "kube_pod_container_status_restarts_total",
    "kube_pod_container_status_last_terminated_exitcode",
}


def rules_of(path):
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


def alerts_of(path):
    return [rule for rule in rules_of(path) if "alert" in rule]


def test_promtool_checks_the_rule_file():
    result = run_tool("promtool", "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass():
    result = run_tool("promtool", "test", "rules", str(ALERTS.with_suffix(".test.yaml")), cwd=RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 1


def test_every_alert_has_a_unit_test_that_expects_it_to_fire():
    tests = load_yaml(ALERTS.with_suffix(".test.yaml"))["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])
             if case["exp_alerts"]}
    assert {rule["alert"] for rule in alerts_of(ALERTS)} == fired


def test_every_alert_links_its_runbook():
    guide = (REPO / "docs" / "operations.md").read_text()
    anchors = {heading.strip().lower() for heading in re.findall(r"^#+ (.+)$", guide, re.MULTILINE)}
    for rule in alerts_of(ALERTS):
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{rule['alert'].lower()}"
        assert rule["alert"].lower() in anchors, f"no runbook heading for {rule['alert']}"


def test_the_rules_use_only_metrics_the_worker_exports():
    worker = metric_sample_names()
    recorded = {rule["record"] for rule in rules_of(ALERTS) if "record" in rule}
    for rule in rules_of(ALERTS):
        unknown = metric_names(rule["expr"]) - worker - recorded - EXTERNAL_METRICS
        assert not unknown, f"{rule.get('alert') or rule['record']}: {sorted(unknown)}"


def test_the_alerts_cover_what_operators_page_on():
    names = {rule["alert"] for rule in alerts_of(ALERTS)}
    assert {
        "EurovocLagGrowing", "EurovocNoOutput", "EurovocWorkerStalled", "EurovocDeadLetterRate",
        "EurovocWorkerRestarting", "EurovocWorkerFatalError", "EurovocPartitionsPausedTooLong",
        "EurovocBrokerUnreachable", "EurovocOutOfMemorySplits", "EurovocOldDocumentInFlight",
    } <= names


def test_metric_names_are_read_from_the_expressions():
    assert metric_names('sum by (job) (rate(a_total{job="x"}[5m])) / on (job) b') == {"a_total", "b"}
    with pytest.raises(AssertionError):
        metric_names('{__name__=~"eurovoc_.*"}')
