"""Faults an operator meets, against the real broker: missing or deleted topics, readiness, a
stalled model, a broker restart. Each runs ``eurovoc-worker run`` as a subprocess."""

from __future__ import annotations

import signal
import threading
import time
import uuid

import orjson
import pytest

from tests.integration.conftest import start_worker
from tests.integration.worker_harness import (
    TopicReader,
    documents,
    feed,
    longest_gap,
    metric_values,
    owned_at,
    wait_until,
)
from tests.kafka_fixtures import (
    LocalBroker,
    admin_client,
    create_topic,
    produce_messages,
)
from worker.kafka.topics import missing_topics

pytestmark = [pytest.mark.integration]


def _exists(bootstrap: str, topic: str) -> bool:
    with admin_client(bootstrap) as admin:
        return not missing_topics(admin, [topic])


def _delete(bootstrap: str, topic: str) -> None:
    with admin_client(bootstrap) as admin:
        admin.delete_topics([topic])
    wait_until(lambda: not _exists(bootstrap, topic), 30, f"{topic} deleted")


@pytest.mark.timeout(60)
def test_a_missing_topic_exits_2_within_10_s_and_is_not_created(kafka_bootstrap, topics,
                                                                 group_id, tiny_model, workers):
    _delete(kafka_bootstrap, f"{topics}-out")
    started = time.monotonic()
    worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=topics, group=group_id,
                          model=tiny_model)
    assert worker.wait(30) == 2
    assert time.monotonic() - started < 10
    reason = worker.events("stopped")[-1]["reason"]
    assert f"{topics}-out does not exist" in reason and "--create-topics" in reason
    # The local broker auto-creates topics, and kafka-python would have asked it to.
    assert not _exists(kafka_bootstrap, f"{topics}-out")


@pytest.mark.timeout(90)
def test_create_topics_creates_the_missing_ones(kafka_bootstrap, group_id, tiny_model, workers):
    topic = f"worker-{uuid.uuid4().hex}"
    worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=topic, group=group_id,
                          model=tiny_model,
                          extra=["--create-topics", "--create-topics-partitions", "2"])
    worker.wait_event("topics_created", 30)
    with admin_client(kafka_bootstrap) as admin:
        described = admin.describe_topics([topic, f"{topic}-out", f"{topic}-dlq"])
    assert [len(entry["partitions"]) for entry in described] == [2, 2, 2]
    worker.wait_event("partitions_assigned", 30)
    assert worker.stop() == 0
    with admin_client(kafka_bootstrap) as admin:
        admin.delete_topics([topic, f"{topic}-out", f"{topic}-dlq"])


@pytest.mark.timeout(90)
def test_a_topic_deleted_while_running_is_a_clear_fatal_error(kafka_bootstrap, topics, group_id,
                                                             tiny_model, workers):
    worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=topics, group=group_id,
                          model=tiny_model, extra=["--topic-check-interval-s", "1"])
    worker.wait_event("partitions_assigned", 30)
    _delete(kafka_bootstrap, f"{topics}-dlq")
    assert worker.wait(30) == 1
    assert f"topic {topics}-dlq no longer exists" in worker.events("stopped")[-1]["reason"]
    assert not _exists(kafka_bootstrap, f"{topics}-dlq")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_readyz_follows_the_partitions_a_member_holds(kafka_bootstrap, topics, group_id,
                                                     tiny_model, workers):
    produce_messages(kafka_bootstrap, topics, documents(300))
    slow = {"EUROVOC_TEST_BATCH_DELAY_S": "0.5"}
    common = dict(bootstrap=kafka_bootstrap, topic=topics, group=group_id, model=tiny_model,
                  module="tests.integration.slow_worker", env=slow,
                  extra=["--max-batch-size", "2", "--drain-timeout-s", "5"])
    first = start_worker(workers, name="first", **common)
    wait_until(lambda: first.get("/readyz")[0] == 200, 60, "the first worker ready")
    second = start_worker(workers, name="second", **common)
    samples: list[tuple[float, int]] = []

    def ready_and_assigned() -> bool:
        status = second.get("/readyz")[0] if second.proc.poll() is None else 0
        samples.append((time.time(), status))
        return status == 200 and bool(second.events("partitions_assigned"))

    wait_until(ready_and_assigned, 60, "the second worker ready", interval_s=0.05)
    assigned_at = min(_epoch(event["ts"]) for event in second.events("partitions_assigned"))
    first_ready = min(at for at, status in samples if status == 200)
    assert first_ready >= assigned_at - 0.05  # never ready before its partitions came

    def busy() -> bool:
        in_flight = metric_values(second.get("/metrics")[1], "eurovoc_in_flight_documents")
        return in_flight.get("", 0) > 0

    wait_until(busy, 30, "the second worker to have documents in flight")
    second.signal(signal.SIGTERM)
    wait_until(lambda: second.events("drain_start"), 10, "the drain to start")
    assert second.get("/readyz") == (503, "stopping\n")  # still draining: 5 s of model work
    assert second.wait(20) == 0


@pytest.mark.timeout(120)
def test_a_model_that_blocks_forever_turns_healthz_503_and_exits_1(kafka_bootstrap, topics,
                                                                    group_id, tiny_model,
                                                                    workers):
    produce_messages(kafka_bootstrap, topics, documents(10))
    worker = start_worker(
        workers, bootstrap=kafka_bootstrap, topic=topics, group=group_id, model=tiny_model,
        module="tests.integration.slow_worker", env={"EUROVOC_TEST_BATCH_DELAY_S": "100000"},
        extra=["--stall-timeout-s", "6"],
    )
    worker.wait_event("partitions_assigned", 30)
    started = time.monotonic()
    health: list[tuple[int, str]] = []

    def unhealthy() -> bool:
        if worker.proc.poll() is not None:
            return True
        health.append(worker.get("/healthz"))
        return health[-1][0] == 503

    wait_until(unhealthy, 30, "/healthz 503", interval_s=0.1)
    assert health and health[-1][0] == 503 and "stalled" in health[-1][1]
    assert worker.wait(20) == 1
    assert time.monotonic() - started < 6 + 10  # stall_timeout_s, then a few seconds to exit
    [stalled] = worker.events("stalled")
    assert "in stage model" in stalled["msg"] and "IO thread alive" in stalled["msg"]
    assert "stalled" in worker.events("stopped")[-1]["reason"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_worker_rides_out_a_broker_restart_and_loses_nothing(tmp_path, tiny_model,
                                                                 workers):
    broker = LocalBroker(tmp_path / "kafka")
    bootstrap = broker.start()
    try:
        topic = f"restart-{uuid.uuid4().hex[:8]}"
        for name in (topic, f"{topic}-out", f"{topic}-dlq"):
            create_topic(bootstrap, name, 3)
        sent = documents(400)
        produce_messages(bootstrap, topic, sent)
        worker = start_worker(
            workers, bootstrap=bootstrap, topic=topic, group=f"g-{topic}", model=tiny_model,
            module="tests.integration.slow_worker", env={"EUROVOC_TEST_BATCH_DELAY_S": "0.2"},
            extra=["--max-batch-size", "8", "--request-timeout-ms", "10000"],
        )
        reader = TopicReader(bootstrap, f"{topic}-out")
        reader.wait_for(40, timeout_s=60)
        reader.close()
        broker.stop()
        time.sleep(20)
        status, text = worker.get("/metrics")
        assert status == 200 and metric_values(text, "eurovoc_broker_connected") == {"": 0.0}
        broker.start()
        reader = TopicReader(bootstrap, f"{topic}-out")
        reader.wait_for(len(sent), timeout_s=120)
        assert set(reader.ids()) == {key.decode() for key, _ in sent}
        reader.close()
        assert worker.stop() == 0
        assert len(worker.events("broker_unreachable")) == 1
        [back] = worker.events("broker_reachable")
        assert 15 < back["outage_seconds"] < 60
        kafka_lines = [line for line in worker.lines if '"logger":"kafka' in line]
        assert len(kafka_lines) < 15, "\n".join(kafka_lines)
    finally:
        broker.stop()


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts).timestamp()



@pytest.mark.slow
@pytest.mark.timeout(240)
def test_survivors_keep_working_while_a_killed_member_times_out(kafka_bootstrap, tiny_model,
                                                                workers):
    """Fault 8: with the cooperative assignor, one SIGKILLed worker and a replacement joining
    (a rebalance that waits for the dead member's session), the survivors' partitions flow on.
    kafka-python's poll() fetched nothing while its JoinGroup was pending."""
    topic = f"failover-{uuid.uuid4().hex[:8]}"
    for name in (topic, f"{topic}-out", f"{topic}-dlq"):
        create_topic(kafka_bootstrap, name, 6)
    session_s = 12
    common = dict(bootstrap=kafka_bootstrap, topic=topic, group=f"g-{topic}", model=tiny_model,
                  extra=["--session-timeout-ms", str(session_s * 1000)])
    names = ["w1", "w2", "w3"]
    started = {name: start_worker(workers, name=name, **common) for name in names}
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(kafka_bootstrap, topic, 6, 40.0, stop),
                              daemon=True)
    feeder.start()
    try:
        for worker in started.values():
            wait_until(lambda worker=worker: worker.get("/readyz")[0] == 200, 90, "ready")
        time.sleep(3)
        killed_at = time.time()
        started["w3"].kill()
        start_worker(workers, name="w4", **common)  # joining: a rebalance that waits for w3
        time.sleep(session_s + 3)
    finally:
        stop.set()
        feeder.join(10)
    owned = {name: owned_at(started[name].events(), killed_at) for name in ("w1", "w2")}
    reader = TopicReader(kafka_bootstrap, f"{topic}-out")
    reader.poll(3000)
    by_partition: dict[int, list[float]] = {}
    for record in reader.records:
        partition = orjson.loads(record.value)["source"]["partition"]
        by_partition.setdefault(partition, []).append(record.timestamp / 1000)
    reader.close()
    for name, partitions in owned.items():
        gap = longest_gap([t for p in partitions for t in by_partition.get(p, [])], killed_at,
                          killed_at + session_s)
        assert partitions and gap < session_s / 2, (name, gap)

