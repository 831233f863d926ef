"""The dead-letter limits on the real broker, read in polls of 500 (issue 17): each record judged
once, in its partition's offset order, so a backlog trips them exactly when the rule says.

One-partition topics and a fresh group: the whole backlog is there before the worker starts,
so its first poll returns 500 records, which decoding rejects at once while the engine labels
the good ones later.
"""

from __future__ import annotations

import uuid

import pytest

from schemas.dead_letter import DeadLetterHeaders
from tests.integration.conftest import start_worker
from tests.integration.worker_harness import TopicReader, document, wait_until
from tests.kafka_fixtures import (
    admin_client,
    committed_offsets,
    create_topic,
    produce_messages,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAD = b"not json at all"


@pytest.fixture
def one_partition(kafka_bootstrap: str):
    """An input topic and its ``-out`` / ``-dlq`` topics, one partition each."""
    name = f"limits-{uuid.uuid4().hex}"
    names = [name, f"{name}-out", f"{name}-dlq"]
    for topic in names:
        create_topic(kafka_bootstrap, topic, 1)
    yield name
    try:
        with admin_client(kafka_bootstrap) as admin:
            admin.delete_topics(names)
    except Exception:  # noqa: BLE001 - uuid-named leftovers harm nobody
        pass


def backlog(pattern: list[bool]) -> list[tuple[bytes, bytes]]:
    """One record per entry, in offset order: True a bad one (not JSON), False a document."""
    return [(f"r-{offset}".encode(), BAD if bad else document(f"r-{offset}"))
            for offset, bad in enumerate(pattern)]


def dead_letter_offsets(bootstrap: str, topic: str, count: int, read_committed: bool
                        ) -> list[int]:
    reader = TopicReader(bootstrap, f"{topic}-dlq", read_committed=read_committed)
    try:
        reader.wait_for(count, timeout_s=30)
        reader.poll(1000)  # and nothing more
        return sorted(DeadLetterHeaders.from_kafka_headers(record.headers).source_offset
                      for record in reader.records)
    finally:
        reader.close()


@pytest.mark.timeout(150)
def test_one_bad_record_in_three_never_trips_the_defaults(kafka_bootstrap, one_partition,
                                                          group_id, tiny_model, workers):
    # The reproduction: 600 records, offsets 2, 5, 8, ... bad; it used to stop with
    # exit 3 after 99 dead letters.
    produce_messages(kafka_bootstrap, one_partition, backlog([i % 3 == 2 for i in range(600)]))
    worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=one_partition,
                          group=group_id, model=tiny_model, extra=["--max-poll-records", "500"])
    wait_until(lambda: committed_offsets(kafka_bootstrap, group_id, one_partition) == {0: 600}
               or worker.proc.poll() is not None, 120, "all 600 records committed")
    assert not worker.events("dlq_limit"), worker.events("stopped")
    assert worker.stop() == 0
    letters = dead_letter_offsets(kafka_bootstrap, one_partition, 200, read_committed=False)
    assert letters == list(range(2, 600, 3))


@pytest.mark.timeout(150)
@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_the_100th_dead_letter_in_a_row_stops_the_worker_and_no_earlier(
        kafka_bootstrap, one_partition, group_id, tiny_model, workers, delivery):
    # 300 documents; 99 bad, 1 document, 99 bad, 1 document; then 150 bad. With the default
    # limits the last run's 100th record (offset 599) is the first that breaks one: 298 of the
    # last 600 is under 50 %, and the runs of 99 before it stay under 100.
    pattern = [False] * 300 + ([True] * 99 + [False]) * 2 + [True] * 150
    produce_messages(kafka_bootstrap, one_partition, backlog(pattern))
    worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=one_partition,
                          group=group_id, model=tiny_model,
                          extra=["--max-poll-records", "500", "--delivery", delivery])
    assert worker.wait(timeout_s=120) == 3
    stopped = worker.events("stopped")[-1]
    assert "100 consecutive" in stopped["reason"], stopped
    assert committed_offsets(kafka_bootstrap, group_id, one_partition) == {0: 599}
    letters = dead_letter_offsets(kafka_bootstrap, one_partition, 99 * 3,
                                  read_committed=delivery == "exactly-once")
    assert letters == list(range(300, 399)) + list(range(400, 499)) + list(range(500, 599))
