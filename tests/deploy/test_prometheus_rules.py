"""deploy/prometheus: the alert rules pass promtool's checks and unit tests, use only metrics the
worker exports, and each has a runbook in docs/operations.md."""

import re

import pytest

from tests.deploy.manifests import load_yaml
from tests.deploy.promql import metric_names
from tests.deploy.tools import DEPLOY, REPO, run_tool
from tests.deploy.worker_facts import metric_sample_names

RULES = DEPLOY / "prometheus"
LOADED = RULES / "alerts.yaml"
# Rules on the gauges of the worker redesign (issue 8), kept in their own file until the worker
# exports them; this list goes away with that file.
PENDING = RULES / "stall-alerts.yaml"
PENDING_METRICS = {
    "eurovoc_oldest_in_flight_seconds",
    "eurovoc_last_progress_timestamp_seconds",
    "eurovoc_broker_connected",
}
# Metrics of other exporters the rules rely on: Prometheus itself and kube-state-metrics.
EXTERNAL_METRICS = {
    "up",
    "kube_pod_container_status_restarts_total",
    "kube_pod_container_status_last_terminated_exitcode",
}
RULE_FILES = [LOADED, PENDING]


def rules_of(path):
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]


def alerts_of(path):
    return [rule for rule in rules_of(path) if "alert" in rule]


def test_promtool_checks_the_rule_files():
    result = run_tool("promtool", "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass():
    tests = [path.with_suffix(".test.yaml") for path in RULE_FILES]
    result = run_tool("promtool", "test", "rules", *map(str, tests), cwd=RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests)


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_every_alert_has_a_unit_test_that_expects_it_to_fire(path):
    tests = load_yaml(path.with_suffix(".test.yaml"))["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])
             if case["exp_alerts"]}
    assert {rule["alert"] for rule in alerts_of(path)} == fired


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_every_alert_links_its_runbook(path):
    guide = (REPO / "docs" / "operations.md").read_text()
    anchors = {heading.strip().lower() for heading in re.findall(r"^#+ (.+)$", guide, re.MULTILINE)}
    for rule in alerts_of(path):
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{rule['alert'].lower()}"
        assert rule["alert"].lower() in anchors, f"no runbook heading for {rule['alert']}"


def test_loaded_rules_use_only_metrics_the_worker_exports():
    worker = metric_sample_names()
    recorded = {rule["record"] for rule in rules_of(LOADED) if "record" in rule}
    for rule in rules_of(LOADED):
        unknown = metric_names(rule["expr"]) - worker - recorded - EXTERNAL_METRICS
        assert not unknown, f"{rule.get('alert') or rule['record']}: {sorted(unknown)}"


def test_pending_rules_wait_only_for_the_worker_redesigns_gauges():
    worker = metric_sample_names()
    used = set().union(*(metric_names(rule["expr"]) for rule in rules_of(PENDING)))
    assert used - worker <= PENDING_METRICS, sorted(used - worker - PENDING_METRICS)
    exported = PENDING_METRICS & worker
    assert not exported, (
        f"the worker exports {sorted(exported)} now: move {PENDING.name}'s group into "
        f"{LOADED.name} and drop PENDING_METRICS")


def test_the_alerts_cover_what_operators_page_on():
    names = {rule["alert"] for path in RULE_FILES for rule in alerts_of(path)}
    assert {
        "EurovocLagGrowing", "EurovocNoOutput", "EurovocWorkerStalled", "EurovocDeadLetterRate",
        "EurovocWorkerRestarting", "EurovocWorkerFatalError", "EurovocPartitionsPausedTooLong",
        "EurovocBrokerUnreachable", "EurovocOutOfMemorySplits",
    } <= names


def test_metric_names_are_read_from_the_expressions():
    assert metric_names('sum by (job) (rate(a_total{job="x"}[5m])) / on (job) b') == {"a_total", "b"}
    with pytest.raises(AssertionError):
        metric_names('{__name__=~"eurovoc_.*"}')
