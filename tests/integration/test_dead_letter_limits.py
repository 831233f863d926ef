"""The dead-letter limits on the real broker, read in polls of 500 (issue 17): each record judged
once, in its partition's offset order, so a backlog trips them exactly when the rule says.

One-partition topics and a fresh group: the whole backlog is there before the worker starts,
so its first poll returns 500 records, which decoding rejects at once while the engine labels
the good ones later.
"""

from __future__ import annotations

import pytest

from schemas.dead_letter import DeadLetterHeaders
from tests.integration.conftest import start_worker
from tests.integration.worker_harness import TopicReader, document, wait_until
from tests.kafka_fixtures import committed_offsets, produce_messages

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAD = b"not json at all"


one_partition = pytest.mark.parametrize("topics", [1], indirect=True)
"""One-partition input, output and dead-letter topics (the ``topics`` fixture)."""


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
@one_partition
def test_one_bad_record_in_three_never_trips_the_defaults(kafka_bootstrap, topics,
                                                          group_id, tiny_model, workers):
    # The reproduction: 600 records, offsets 2, 5, 8, ... bad; it used to stop with
    # exit 3 after 99 dead letters.
    produce_messages(kafka_bootstrap, topics, backlog([i % 3 == 2 for i in range(600)]))
    worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=topics,
                          group=group_id, model=tiny_model, extra=["--max-poll-records", "500"])
    wait_until(lambda: committed_offsets(kafka_bootstrap, group_id, topics) == {0: 600}
               or worker.proc.poll() is not None, 120, "all 600 records committed")
    assert not worker.events("dlq_limit"), worker.events("stopped")
    assert worker.stop() == 0
    letters = dead_letter_offsets(kafka_bootstrap, topics, 200, read_committed=False)
    assert letters == list(range(2, 600, 3))


@pytest.mark.timeout(150)
@one_partition
@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_the_100th_dead_letter_in_a_row_stops_the_worker_and_no_earlier(
        kafka_bootstrap, topics, group_id, tiny_model, workers, delivery):
    # 300 documents; 99 bad, 1 document, 99 bad, 1 document; then 150 bad. With the default
    # limits the last run's 100th record (offset 599) is the first that breaks one: 298 of the
    # last 600 is under 50 %, and the runs of 99 before it stay under 100.
    pattern = [False] * 300 + ([True] * 99 + [False]) * 2 + [True] * 150
    produce_messages(kafka_bootstrap, topics, backlog(pattern))
    worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=topics,
                          group=group_id, model=tiny_model,
                          extra=["--max-poll-records", "500", "--delivery", delivery])
    assert worker.wait(timeout_s=120) == 3
    stopped = worker.events("stopped")[-1]
    assert "100 consecutive" in stopped["reason"], stopped
    assert committed_offsets(kafka_bootstrap, group_id, topics) == {0: 599}
    letters = dead_letter_offsets(kafka_bootstrap, topics, 99 * 3,
                                  read_committed=delivery == "exactly-once")
    assert letters == list(range(300, 399)) + list(range(400, 499)) + list(range(500, 599))
