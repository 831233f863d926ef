"""Cooperative hand-over on the real broker, in-process (real consumers and producers, a fake
engine): work finished for a revoked partition is committed before the new owner reads it."""

from __future__ import annotations

import collections
import threading
import time

import orjson
import pytest

from tests.fake_engine import FakeEngine
from tests.integration.worker_harness import wait_until
from tests.kafka_fixtures import consume_all, produce_messages
from worker.app import build_processor
from worker.kafka.clients import build_consumer, producer_config
from worker.kafka.workarounds import Producer
from worker.pipeline.processor import StreamProcessor
from worker.pipeline.progress import Progress
from worker.runtime.http_endpoints import HealthState
from worker.runtime.metrics import WorkerMetrics
from worker.settings.worker_settings import load_settings

pytestmark = [pytest.mark.integration]

DOCUMENTS = 30


def _worker(settings) -> tuple[StreamProcessor, WorkerMetrics, HealthState, threading.Thread]:
    metrics = WorkerMetrics()
    health = HealthState(60)
    processor = build_processor(
        settings, engine=FakeEngine(), consumer=build_consumer(settings),
        producer=Producer(**producer_config(settings)), metrics=metrics, health=health,
        progress=Progress(metrics))
    thread = threading.Thread(target=processor.run, daemon=True)
    thread.start()
    return processor, metrics, health, thread


def _produced(metrics: WorkerMetrics) -> float:
    return metrics.registry.get_sample_value("eurovoc_documents_produced_total") or 0


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_an_idle_worker_commits_revoked_work_before_the_hand_over(kafka_bootstrap, topic_factory):
    """Fault 7, 20 times: the first worker finished everything but committed nothing yet (a
    long commit interval); a second worker joins. Any record the first did not commit before
    the follow-up rebalance completed would be labelled twice."""
    duplicates: dict[str, int] = {}
    for round_number in range(20):
        names = [topic_factory(3) for _ in range(3)]
        settings = load_settings(
            bootstrap_servers=kafka_bootstrap, input_topic=names[0], output_topic=names[1],
            dlq_topic=names[2], group_id=f"{names[0]}-group", model="/none", metrics_port=-1,
            session_timeout_ms=6000, heartbeat_interval_ms=300, commit_interval_ms=600_000,
            poll_timeout_ms=20,
        )
        produce_messages(kafka_bootstrap, names[0], [
            (f"r{round_number}-{i}".encode(),
             orjson.dumps({"id": f"r{round_number}-{i}", "text": "fish"}))
            for i in range(DOCUMENTS)])
        first, first_metrics, _, first_thread = _worker(settings)
        wait_until(lambda: _produced(first_metrics) == DOCUMENTS, 60, "the first worker done")
        time.sleep(0.3)  # idle: everything acknowledged, nothing committed
        second, second_metrics, second_health, second_thread = _worker(settings)
        wait_until(lambda: second_health.member, 60, "the second worker holding partitions")
        for processor in (first, second):
            processor.request_stop("test")
        for thread in (first_thread, second_thread):
            thread.join(30)
        assert _produced(second_metrics) == 0, f"round {round_number}: work was done twice"
        outputs = consume_all(kafka_bootstrap, names[1], DOCUMENTS)
        counts = collections.Counter(orjson.loads(record.value)["id"] for record in outputs)
        duplicates.update({doc: n for doc, n in counts.items() if n > 1})
        assert len(counts) == DOCUMENTS
    assert duplicates == {}
