"""deploy/grafana: the dashboard shows what operators need and uses only the worker's metrics."""

import json
import re

import pytest

from tests.deploy.promql import metric_names
from tests.deploy.tools import DEPLOY
from tests.deploy.worker_facts import metric_sample_names

DASHBOARD = DEPLOY / "grafana" / "eurovoc-worker.json"
# Grafana's own variables, replaced by what Grafana would send to Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def as_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)  # dashboard variables ($job, $instance)


def expressions() -> list[tuple[str, str]]:
    found = [(panel["title"], target["expr"]) for panel in panels() for target in panel["targets"]]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = re.fullmatch(r"label_values\((.+), \w+\)", variable["definition"])
            found.append((f"variable {variable['name']}", query.group(1)))
    return found


@pytest.mark.parametrize(("title", "expr"), expressions())
def test_every_query_parses_and_uses_only_the_workers_metrics(title, expr):
    unknown = metric_names(as_promql(expr)) - metric_sample_names()
    assert not unknown, f"{title}: not exported by the worker: {sorted(unknown)}"


def test_the_dashboard_shows_what_the_operators_guide_promises():
    used = {name for _, expr in expressions() for name in metric_names(as_promql(expr))}
    assert {
        "eurovoc_documents_consumed_total", "eurovoc_documents_produced_total",  # in and out
        "eurovoc_consumer_lag",  # lag per partition
        "eurovoc_end_to_end_seconds_bucket",  # latency heatmap
        "eurovoc_batch_tokens_bucket", "eurovoc_padding_efficiency_sum",  # batches
        "eurovoc_documents_dead_lettered_total",  # dead letters by reason
        "eurovoc_model_info",  # model
        "eurovoc_last_progress_timestamp_seconds", "eurovoc_oldest_in_flight_seconds",
        "eurovoc_broker_connected",  # the watchdog's signals, as the stall alerts see them
    } <= used
    kinds = {panel["type"] for panel in panels()}
    assert {"heatmap", "timeseries", "table"} <= kinds
    [reasons] = [p for p in panels() if "eurovoc_documents_dead_lettered_total" in p["targets"][0]["expr"]
                 and "by (reason)" in p["targets"][0]["expr"]]
    assert reasons["targets"][0]["legendFormat"] == "{{reason}}"


def test_panels_use_the_datasource_variable_and_unique_ids():
    board = dashboard()
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    assert board["uid"] == "eurovoc-worker"
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
