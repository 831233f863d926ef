"""What a worker exports while its model is still loading (in-process, the real broker)."""

from __future__ import annotations

import time

import pytest

from worker.app import run_worker
from worker.pipeline.processor import ExitCode
from worker.runtime.metrics import WorkerMetrics
from worker.settings.worker_settings import load_settings

pytestmark = [pytest.mark.integration]


def test_while_the_model_loads_the_broker_counts_as_reached_and_progress_as_now(
        kafka_bootstrap, topics, group_id):
    """An alert on ``eurovoc_broker_connected == 0`` or on an old
    ``eurovoc_last_progress_timestamp_seconds`` must not fire for a worker loading its model."""
    settings = load_settings(
        bootstrap_servers=kafka_bootstrap, input_topic=topics, output_topic=f"{topics}-out",
        dlq_topic=f"{topics}-dlq", group_id=group_id, model="/none", metrics_port=-1)
    seen: dict[str, float | None] = {}

    def loading_engine(_engine_settings, metrics: WorkerMetrics):
        for name in ("eurovoc_broker_connected", "eurovoc_last_progress_timestamp_seconds"):
            seen[name] = metrics.registry.get_sample_value(name)
        raise ValueError("max_length: stop the test here")

    started = time.time()
    exit_code = run_worker(settings, engine_factory=loading_engine, configure_logging=False)
    assert exit_code == int(ExitCode.CONFIG)
    assert seen["eurovoc_broker_connected"] == 1
    assert started - 1 <= seen["eurovoc_last_progress_timestamp_seconds"] <= time.time()
