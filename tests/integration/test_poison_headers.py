"""Records with headers kafka-python cannot decode, on the real broker: the worker labels what it
can, dead-letters what it must, and moves on without a restart.

The header keys are raw bytes that are not UTF-8, written by kafka-python's own record builder
(``RawHeaderKey`` encodes to its bytes), so the broker stores exactly what a producer in another
language (or ``kcat -H``) would send; an unpatched kafka-python consumer proves it by failing.
"""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CorruptRecordError

from schemas.dead_letter import DeadLetterHeaders
from tests.integration.conftest import start_worker
from tests.integration.worker_harness import (
    TopicReader,
    document,
    metric_values,
    wait_until,
)
from tests.kafka_fixtures import CLIENT_TIMEOUTS, CONSUMER_TIMEOUTS, committed_offsets
from worker.kafka.workarounds import RawHeaderKey

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAD_KEY = RawHeaderKey.from_bytes(b"\xff\xfe\xc3(origin")  # not UTF-8
GOOD = 30  # good documents before and after the poison, one partition


def _produce_to_partition_0(bootstrap: str, topic: str, records: list[tuple]) -> None:
    """``(key, value, headers)`` records, in this order, to partition 0."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **CLIENT_TIMEOUTS)
    try:
        futures = [producer.send(topic, key=key, value=value, headers=headers, partition=0)
                   for key, value, headers in records]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=10)
    finally:
        producer.close(timeout=10)


def _upstream_stops_at(bootstrap: str, topic: str, timeout_s: float) -> int:
    """How many records an unpatched consumer reads from partition 0 before ``poll()`` raises
    ``CorruptRecordError`` (the record after them is where the partition stops upstream)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             **CONSUMER_TIMEOUTS)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    read = 0
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                read += sum(len(batch) for batch in consumer.poll(timeout_ms=200).values())
            except CorruptRecordError:
                return read
        raise AssertionError(f"an unpatched consumer read {read} records without an error")
    finally:
        consumer.close()


def _still_running(worker) -> None:
    """Fails at once when the worker exits (upstream's parser: exit 1 on the first poison)."""
    code = worker.proc.poll()
    assert code is None, f"the worker exited with {code}:\n{worker.log_text()[-3000:]}"


@pytest.mark.timeout(150)
def test_undecodable_header_keys_neither_stop_the_partition_nor_the_worker(
        kafka_bootstrap, topics, group_id, tiny_model, workers):
    before = [(f"a{i}".encode(), document(f"a{i}"), []) for i in range(GOOD)]
    after = [(f"b{i}".encode(), document(f"b{i}"), []) for i in range(GOOD)]
    poison = [
        # a fine document: labelled (a header the worker does not read does not matter)
        (b"labelled", document("labelled"), [(BAD_KEY, b"x"), ("trace", b"")]),
        # a value that is no document, with the same key: dead-lettered for its value
        (b"bad-value", b"{not json", [(BAD_KEY, b"\xff")]),
        # the header the worker reads is unreadable: dead-lettered as invalid_header
        (b"bad-count", document("bad-count"), [(BAD_KEY, b""), ("replay.count", b"\xff1")]),
    ]
    _produce_to_partition_0(kafka_bootstrap, topics, before + poison + after)
    assert _upstream_stops_at(kafka_bootstrap, topics, timeout_s=30) == GOOD

    worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=topics, group=group_id,
                          model=tiny_model)
    outputs = TopicReader(kafka_bootstrap, f"{topics}-out")
    dead = TopicReader(kafka_bootstrap, f"{topics}-dlq")
    try:
        outputs.wait_for(2 * GOOD + 1, timeout_s=90, also=lambda: _still_running(worker))
        dead.wait_for(2, timeout_s=30, also=lambda: _still_running(worker))
        total = len(before + poison + after)
        wait_until(lambda: committed_offsets(kafka_bootstrap, group_id, topics) == {0: total},
                   30, f"offset {total} committed on partition 0")
        labelled = {key.decode() for key, _, _ in before + after} | {"labelled"}
        assert outputs.ids() == dict.fromkeys(labelled, 1)
        letters = {record.key: DeadLetterHeaders.from_kafka_headers(record.headers)
                   for record in dead.records}
        assert {key: headers.error_type.value for key, headers in letters.items()} == {
            b"bad-value": "not_json", b"bad-count": "invalid_header"}
        assert letters[b"bad-count"].source_offset == GOOD + 2
        assert "replay.count" in letters[b"bad-count"].error_message
        assert [record.value for record in dead.records if record.key == b"bad-value"] == [
            b"{not json"]
        _still_running(worker)  # never exited: no restart
        assert worker.get("/healthz")[0] == 200
        _, text = worker.get("/metrics")
        reasons = metric_values(text, "eurovoc_documents_dead_lettered_total")
        assert reasons['{reason="invalid_header"}'] == 1
        assert reasons['{reason="not_json"}'] == 1
    finally:
        outputs.close()
        dead.close()
    assert worker.stop() == 0
