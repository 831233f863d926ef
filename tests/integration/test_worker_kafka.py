"""The worker against the real broker: delivery, dead letters, backpressure, signals, rebalances.

Each test runs ``eurovoc-worker run`` (or the slowed variant) as a subprocess on fresh
3-partition topics and a fresh group, with a tiny random checkpoint.
"""

from __future__ import annotations

import signal
import time

import orjson
import pytest

from schemas.dead_letter import DeadLetterHeaders
from tests.integration.conftest import start_worker
from tests.integration.worker_harness import (
    TopicReader,
    documents,
    metric_values,
    wait_until,
)
from tests.kafka_fixtures import (
    all_committed,
    committed_offsets,
    end_offsets,
    produce_messages,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(150)
def test_every_document_exactly_once_and_lag_zero(kafka_bootstrap, topics, group_id, tiny_model,
                                                  workers):
    sent = documents(2000)
    produce_messages(kafka_bootstrap, topics, sent)
    worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=topics, group=group_id,
                    model=tiny_model)
    reader = TopicReader(kafka_bootstrap, f"{topics}-out")
    try:
        reader.wait_for(2000, timeout_s=90)
        wait_until(lambda: all_committed(kafka_bootstrap, group_id, topics), 30,
                   "committed offsets == end offsets")

        def lag_zero() -> bool:
            status, text = worker.get("/metrics")
            lags = metric_values(text, "eurovoc_consumer_lag")
            return status == 200 and len(lags) == 3 and all(v == 0 for v in lags.values())

        wait_until(lag_zero, 15, "consumer lag 0 on all 3 partitions")
        assert worker.get("/healthz")[0] == 200
        assert worker.get("/readyz")[0] == 200
        _, text = worker.get("/metrics")
        assert metric_values(text, "eurovoc_documents_consumed_total") == {"": 2000.0}
        assert metric_values(text, "eurovoc_documents_produced_total") == {"": 2000.0}
        assert metric_values(text, "eurovoc_in_flight_documents") == {"": 0.0}
        reader.poll(500)
        ids = reader.ids()
        assert set(ids) == {key.decode() for key, _ in sent}
        assert max(ids.values()) == 1
        first = orjson.loads(reader.records[0].value)
        assert first["source"]["topic"] == topics
        assert reader.records[0].key == first["id"].encode()
    finally:
        reader.close()
    assert worker.stop() == 0


@pytest.mark.timeout(120)
def test_poison_records_go_to_the_dead_letter_topic(kafka_bootstrap, topics, group_id, tiny_model,
                                                    workers):
    poison = {
        "bad-json": (b'{"id": "x", "text": ', "not_json"),
        "bad-utf8": (b'{"id": "x", "text": "\xff\xfe"}', "not_utf8"),
        "binary": (bytes(range(256)) * 4, "not_utf8"),
        "missing-text": (orjson.dumps({"id": "m"}), "schema_violation"),
        "wrong-type": (orjson.dumps({"id": 42, "text": ["a"]}), "schema_violation"),
        "not-object": (b"[1, 2, 3]", "schema_violation"),
        "empty-text": (orjson.dumps({"id": "e", "text": "  "}), "empty_message"),
        "empty-value": (b"", "empty_message"),
        "oversized": (orjson.dumps({"id": "big", "text": "fish " * 20_000}), "too_large"),
    }
    good = documents(300, prefix="good")
    messages = []
    for index, (key, value) in enumerate(good):
        messages.append((key, value))
        if index % 30 == 0 and index // 30 < len(poison):
            name = list(poison)[index // 30]
            messages.append((name.encode(), poison[name][0]))
    produce_messages(kafka_bootstrap, topics, messages)
    worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=topics, group=group_id,
                    model=tiny_model, extra=["--max-message-bytes", "65536"])
    outputs = TopicReader(kafka_bootstrap, f"{topics}-out")
    dead = TopicReader(kafka_bootstrap, f"{topics}-dlq")
    try:
        outputs.wait_for(len(good), timeout_s=60)
        dead.wait_for(len(poison), timeout_s=30)
        wait_until(lambda: all_committed(kafka_bootstrap, group_id, topics), 30,
                   "all offsets committed")
        assert set(outputs.ids()) == {key.decode() for key, _ in good}
        by_key = {record.key.decode(): record for record in dead.records}
        assert set(by_key) == set(poison)
        for name, (value, reason) in poison.items():
            record = by_key[name]
            headers = DeadLetterHeaders.from_kafka_headers(record.headers)
            assert headers.error_type.value == reason, name
            assert headers.source_topic == topics
            assert record.value == value, name  # the original bytes, unchanged
            assert headers.worker_id == "worker"
        _, text = worker.get("/metrics")
        reasons = metric_values(text, "eurovoc_documents_dead_lettered_total")
        assert reasons['{reason="not_utf8"}'] == 2
        assert reasons['{reason="schema_violation"}'] == 3
        assert reasons['{reason="too_large"}'] == 1
    finally:
        outputs.close()
        dead.close()
    assert worker.stop() == 0


@pytest.mark.timeout(120)
def test_slow_batch_causes_no_rebalance(kafka_bootstrap, topics, group_id, tiny_model, workers):
    produce_messages(kafka_bootstrap, topics, documents(12))
    worker = start_worker(
        workers, bootstrap=kafka_bootstrap, topic=topics, group=group_id, model=tiny_model,
        module="tests.integration.slow_worker", env={"EUROVOC_TEST_BATCH_DELAY_S": "15"},
        extra=["--max-poll-interval-ms", "5000", "--max-wait-ms", "2000",
               "--max-in-flight", "8"],
    )
    reader = TopicReader(kafka_bootstrap, f"{topics}-out")
    try:
        assigned = worker.wait_event("partitions_assigned", 30)
        # 12 documents, at most 8 in the model: a 15 s batch (3 x max_poll_interval_ms) while
        # the other 4 wait with the partitions paused and the loop polling on (and healthy),
        # then a second one.
        paused_seen = []

        def watch() -> None:
            status, text = worker.get("/metrics")
            if status == 200 and metric_values(text, "eurovoc_paused_partitions") == {"": 3.0}:
                paused_seen.append(worker.get("/healthz")[0])

        reader.wait_for(12, timeout_s=90, also=watch)
        wait_until(lambda: all_committed(kafka_bootstrap, group_id, topics), 20, "commits")
        assert max(reader.ids().values()) == 1
        assert paused_seen and set(paused_seen) == {200}
    finally:
        reader.close()
    assert worker.stop() == 0
    assert worker.events("partitions_revoked") == []
    assert worker.events("partitions_lost") == []
    assert len(worker.events("partitions_assigned")) == 1
    generations = {event["generation"] for event in worker.events("partitions_assigned")}
    assert generations == {assigned["generation"]}
    assert "poll timeout has expired" not in worker.log_text()


@pytest.mark.timeout(150)
def test_sigterm_mid_stream_loses_and_duplicates_nothing(kafka_bootstrap, topics, group_id,
                                                          tiny_model, workers):
    sent = documents(1500)
    produce_messages(kafka_bootstrap, topics, sent)
    slow = {"EUROVOC_TEST_BATCH_DELAY_S": "0.05"}
    first = start_worker(workers, bootstrap=kafka_bootstrap, topic=topics, group=group_id,
                   model=tiny_model, module="tests.integration.slow_worker", env=slow,
                   extra=["--max-batch-size", "16"], name="first")
    reader = TopicReader(kafka_bootstrap, f"{topics}-out")
    try:
        reader.wait_for(200, timeout_s=60)
        started = time.monotonic()
        first.signal(signal.SIGTERM)
        assert first.wait(timeout_s=40) == 0
        assert time.monotonic() - started < 30 + 5
        assert first.events("drain_start")
        reader.poll(1000)
        done_before = reader.ids()
        assert max(done_before.values()) == 1
        assert len(done_before) < len(sent), "SIGTERM came too late to be mid-stream"
        # what was committed is exactly what was produced, partition by partition
        committed = committed_offsets(kafka_bootstrap, group_id, topics)
        by_partition = {p: 0 for p in range(3)}
        for record in reader.records:
            by_partition[orjson.loads(record.value)["source"]["partition"]] += 1
        assert {p: committed.get(p, 0) for p in range(3)} == by_partition

        second = start_worker(workers, bootstrap=kafka_bootstrap, topic=topics, group=group_id,
                        model=tiny_model, name="second")
        reader.wait_for(len(sent), timeout_s=60)
        wait_until(lambda: all_committed(kafka_bootstrap, group_id, topics), 30, "commits")
        reader.poll(500)
        ids = reader.ids()
        assert set(ids) == {key.decode() for key, _ in sent}
        assert max(ids.values()) == 1
    finally:
        reader.close()
    assert second.stop() == 0


@pytest.mark.timeout(150)
def test_second_worker_joining_takes_partitions_without_duplicates(
    kafka_bootstrap, topics, group_id, tiny_model, workers
):
    sent = documents(2000)
    produce_messages(kafka_bootstrap, topics, sent)
    slow = {"EUROVOC_TEST_BATCH_DELAY_S": "0.05"}
    common = dict(bootstrap=kafka_bootstrap, topic=topics, group=group_id, model=tiny_model,
                  module="tests.integration.slow_worker", env=slow,
                  extra=["--max-batch-size", "16"])
    first = start_worker(workers, name="first", **common)
    reader = TopicReader(kafka_bootstrap, f"{topics}-out")
    try:
        reader.wait_for(200, timeout_s=60)
        second = start_worker(workers, name="second", **common)
        second.wait_event("partitions_assigned", 40)
        reader.wait_for(len(sent), timeout_s=90)
        wait_until(lambda: all_committed(kafka_bootstrap, group_id, topics), 30, "commits")
        reader.poll(1000)
        ids = reader.ids()
        assert set(ids) == {key.decode() for key, _ in sent}
        duplicates = {doc: n for doc, n in ids.items() if n > 1}
        assert duplicates == {}
    finally:
        reader.close()
    revoked = first.events("partitions_revoked")
    assert revoked, "the first worker gave no partition away"
    assert first.events("revoke_done")
    assert not first.events("revoke_timeout")
    taken = {p for event in second.events("partitions_assigned") for p in event["partitions"]}
    assert taken, "the second worker got no partition"
    assert first.stop() == 0
    assert second.stop() == 0


@pytest.mark.timeout(90)
def test_dead_letter_limit_stops_the_worker_after_committing_earlier_work(
    kafka_bootstrap, topics, group_id, tiny_model, workers
):
    good = documents(60, prefix="good")
    bad = [(f"bad-{i}".encode(), b"not json at all") for i in range(150)]
    produce_messages(kafka_bootstrap, topics, good)
    produce_messages(kafka_bootstrap, topics, bad)
    worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=topics, group=group_id,
                    model=tiny_model, extra=["--dlq-max-consecutive", "20"])
    code = worker.wait(timeout_s=60)
    assert code == 3
    stopped = worker.events("stopped")[-1]
    assert "dead-letter limit" in stopped["reason"]
    assert "20 consecutive" in stopped["reason"]
    # Everything handled before the trip (a prefix of each partition) was finished and committed;
    # the record that tripped the limit and all after it were not.
    handled = {p: 0 for p in range(3)}
    outputs = TopicReader(kafka_bootstrap, f"{topics}-out")
    dead = TopicReader(kafka_bootstrap, f"{topics}-dlq")
    try:
        outputs.poll(2000)
        dead.poll(2000)
        assert outputs.records and max(outputs.ids().values()) == 1
        for record in outputs.records:
            handled[orjson.loads(record.value)["source"]["partition"]] += 1
        for record in dead.records:
            handled[DeadLetterHeaders.from_kafka_headers(record.headers).source_partition] += 1
        assert 19 <= len(dead.records) < len(bad)
    finally:
        outputs.close()
        dead.close()
    committed = committed_offsets(kafka_bootstrap, group_id, topics)
    assert {p: committed.get(p, 0) for p in range(3)} == handled
    assert sum(committed.values()) < sum(end_offsets(kafka_bootstrap, topics).values())
