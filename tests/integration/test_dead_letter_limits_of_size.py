"""Dead letters and the broker's size limits, on the real broker, in both delivery modes: a
rejected record with a key far above any limit (its producer compresses, so the broker took it)
is dead-lettered with its key cut; a dead-letter topic too small for an accepted document stops
the start (exit 2); a dead letter the broker refuses for a reason no retry fixes (the topic's
limit lowered while the worker runs) stops the worker within seconds (exit 1) naming it, after
one abort in exactly-once mode. Each runs ``eurovoc-worker run`` as a subprocess."""

from __future__ import annotations

import hashlib
import os
import time
import uuid

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from schemas.dead_letter import MAX_KEY_BYTES, dead_letter_bytes
from tests.integration.conftest import start_worker
from tests.integration.worker_harness import (
    TopicReader,
    documents,
    metric_values,
    wait_until,
)
from tests.kafka_fixtures import (
    admin_client,
    all_committed,
    create_topic,
    produce_messages,
)

pytestmark = [pytest.mark.integration]

DELIVERIES = ["at-least-once", "exactly-once"]
HUGE_KEY = b"key " * 275_000  # 1.1 MB, compressed by its producer to a few kB


def _headers(record) -> dict[str, bytes]:
    return dict(record.headers)


def _set_max_message_bytes(bootstrap: str, topic: str, size: int) -> None:
    with admin_client(bootstrap) as admin:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                            configs={"max.message.bytes": str(size)})])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("delivery", DELIVERIES)
def test_a_rejected_record_with_a_huge_key_is_dead_lettered_with_its_key_cut(
        delivery, kafka_bootstrap, topics, group_id, tiny_model, workers):
    good = documents(20)
    produce_messages(kafka_bootstrap, topics, [*good[:10], (HUGE_KEY, b"not json"), *good[10:]],
                     compression_type="gzip", max_request_size=4 * 1024 * 1024)
    worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=topics, group=group_id,
                          model=tiny_model, extra=["--delivery", delivery])
    committed = delivery == "exactly-once"
    letters = TopicReader(kafka_bootstrap, f"{topics}-dlq", read_committed=committed)
    outputs = TopicReader(kafka_bootstrap, f"{topics}-out", read_committed=committed)
    try:
        [letter] = letters.wait_for(1, 60)
        outputs.wait_for(20, 60)
        assert worker.proc.poll() is None  # no exit, no restart
        assert letter.key == HUGE_KEY[:MAX_KEY_BYTES] and letter.value == b"not json"
        headers = _headers(letter)
        assert headers["error.type"] == b"not_json"
        assert headers["error.key_truncated_from"] == str(len(HUGE_KEY)).encode()
        assert headers["error.key_sha256"] == hashlib.sha256(HUGE_KEY).hexdigest().encode()
        assert sorted(outputs.ids()) == sorted(key.decode() for key, _ in good)
        wait_until(lambda: all_committed(kafka_bootstrap, group_id, topics), 30,
                   "every input offset committed")
        aborted = metric_values(worker.get("/metrics")[1], "eurovoc_transactions_total")
        assert aborted.get('{outcome="aborted"}', 0) == 0
        assert worker.stop() == 0
    finally:
        letters.close()
        outputs.close()


@pytest.mark.timeout(60)
def test_a_dead_letter_topic_too_small_for_an_accepted_document_exits_2_naming_it(
        kafka_bootstrap, group_id, tiny_model, workers):
    topic = f"small-dlq-{uuid.uuid4().hex}"
    create_topic(kafka_bootstrap, topic, 1)
    create_topic(kafka_bootstrap, f"{topic}-out", 1)
    create_topic(kafka_bootstrap, f"{topic}-dlq", 1, {"max.message.bytes": "500000"})
    try:
        worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=topic, group=group_id,
                              model=tiny_model)
        assert worker.wait(30) == 2
        reason = worker.events("stopped")[-1]["reason"]
        assert f"dead-letter topic {topic}-dlq takes records of up to 500000 bytes" in reason
        assert f"at least {dead_letter_bytes(1_000_000)}" in reason
    finally:
        with admin_client(kafka_bootstrap) as admin:
            admin.delete_topics([topic, f"{topic}-out", f"{topic}-dlq"])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("delivery", DELIVERIES)
def test_a_dead_letter_the_broker_refuses_stops_the_worker_within_seconds_naming_it(
        delivery, kafka_bootstrap, topics, group_id, tiny_model, workers):
    worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=topics, group=group_id,
                          model=tiny_model, extra=["--delivery", delivery])
    worker.wait_event("partitions_assigned", 60)
    # A limit the worker could not know: lowered after its start-up check.
    _set_max_message_bytes(kafka_bootstrap, f"{topics}-dlq", 20_000)
    produce_messages(kafka_bootstrap, topics, [(b"bad", os.urandom(200_000))])  # not UTF-8
    refused_at = time.monotonic()
    assert worker.wait(30) == 1
    assert time.monotonic() - refused_at < 15
    reason = worker.events("stopped")[-1]["reason"]
    assert f"delivery to topic {topics}-dlq failed: refused by the broker" in reason
    assert "MessageSizeTooLargeError" in reason and f"{topics}/" in reason and "@0" in reason
    assert len(worker.events("delivery_refused")) == (delivery == "exactly-once")
    assert len(worker.events("transaction_aborted")) == (delivery == "exactly-once")
