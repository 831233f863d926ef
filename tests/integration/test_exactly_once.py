"""``--delivery exactly-once`` on the real broker: what a read_committed reader sees.

Each test runs ``eurovoc-worker run`` as a subprocess; a read_uncommitted reader of the same
topic shows what the log physically holds (aborted transactions included), which is what makes
the read_committed assertions able to fail.
"""

from __future__ import annotations

import signal

import orjson
import pytest
from kafka import KafkaProducer

from tests.e2e.cli_runner import run_cli
from tests.integration.conftest import start_worker
from tests.integration.worker_harness import TopicReader, documents, wait_until
from tests.kafka_fixtures import CLIENT_TIMEOUTS, all_committed, produce_messages

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXACTLY_ONCE = ["--delivery", "exactly-once"]
SLOW = {"EUROVOC_TEST_BATCH_DELAY_S": "0.05"}


def _flaky_worker(kafka_bootstrap, topics, group_id, tiny_model, workers, fail_calls: str):
    """An exactly-once worker whose ``send_offsets_to_transaction`` calls ``fail_calls`` fail."""
    return start_worker(workers, bootstrap=kafka_bootstrap, topic=topics, group=group_id,
                        model=tiny_model, module="tests.integration.flaky_txn_worker",
                        env={"EUROVOC_TEST_FAIL_OFFSETS_CALLS": fail_calls}, extra=EXACTLY_ONCE)


def _poisoned(count: int) -> tuple[list[tuple[bytes, bytes]], set[str], set[str]]:
    """``count`` documents, a poison record after every 100th: (messages, good ids, poison keys)."""
    messages, good, poison = [], set(), set()
    for index, (key, value) in enumerate(documents(count)):
        messages.append((key, value))
        good.add(key.decode())
        if index % 100 == 0:
            messages.append((f"poison-{index}".encode(), b'{"id": "x", "text": '))
            poison.add(f"poison-{index}")
    return messages, good, poison


@pytest.mark.timeout(300)
def test_revoke_and_sigterm_mid_stream_repeat_nothing(kafka_bootstrap, topics, group_id,
                                                      tiny_model, workers):
    messages, good, poison = _poisoned(1500)
    produce_messages(kafka_bootstrap, topics, messages)
    common = dict(bootstrap=kafka_bootstrap, topic=topics, group=group_id, model=tiny_model,
                  module="tests.integration.slow_worker", env=SLOW,
                  extra=[*EXACTLY_ONCE, "--max-batch-size", "16"])
    first = start_worker(workers, name="first", **common)
    outputs = TopicReader(kafka_bootstrap, f"{topics}-out", read_committed=True)
    letters = TopicReader(kafka_bootstrap, f"{topics}-dlq", read_committed=True)
    try:
        outputs.wait_for(200, timeout_s=60)
        second = start_worker(workers, name="second", **common)
        second.wait_event("partitions_assigned", 90)  # a busy 2-core machine: slow starts
        first.wait_event("revoke_done", 40)
        outputs.wait_for(600, timeout_s=60)
        first.signal(signal.SIGTERM)
        assert first.wait(timeout_s=40) == 0
        outputs.wait_for(len(good), timeout_s=120)
        letters.wait_for(len(poison), timeout_s=30)
        wait_until(lambda: all_committed(kafka_bootstrap, group_id, topics), 30, "commits")
        outputs.poll(1000)
        letters.poll(500)
        ids = outputs.ids()
        assert set(ids) == good
        assert {doc: n for doc, n in ids.items() if n > 1} == {}
        assert sorted(record.key.decode() for record in letters.records) == sorted(poison)
    finally:
        outputs.close()
        letters.close()
    assert not first.events("revoke_timeout")
    assert first.events("drain_start")
    assert second.stop() == 0
    for worker in (first, second):
        assert not worker.events("transaction_aborted"), worker.log_text()[-3000:]


@pytest.mark.timeout(180)
def test_an_error_inside_a_transaction_aborts_it_and_reprocesses(kafka_bootstrap, topics,
                                                                 group_id, tiny_model, workers):
    sent = documents(1500)
    produce_messages(kafka_bootstrap, topics, sent)
    # Consecutive calls after a first commit: all three happen, however fast the worker is.
    worker = _flaky_worker(kafka_bootstrap, topics, group_id, tiny_model, workers, "2,3,4")
    committed_reader = TopicReader(kafka_bootstrap, f"{topics}-out", read_committed=True)
    raw_reader = TopicReader(kafka_bootstrap, f"{topics}-out")
    try:
        committed_reader.wait_for(len(sent), timeout_s=120)
        wait_until(lambda: all_committed(kafka_bootstrap, group_id, topics), 30, "commits")
        committed_reader.poll(1000)
        ids = committed_reader.ids()
        assert set(ids) == {key.decode() for key, _ in sent}
        assert max(ids.values()) == 1
        raw_reader.wait_for(len(sent) + 1, timeout_s=30)  # the aborted outputs are in the log
    finally:
        committed_reader.close()
        raw_reader.close()
    aborted = worker.events("transaction_aborted")
    assert len(aborted) == 3, worker.log_text()[-3000:]
    assert "injected failure" in aborted[0]["error"]
    assert worker.stop() == 0


@pytest.mark.timeout(150)
def test_a_fenced_producer_exits_1_with_a_clear_message(kafka_bootstrap, topics, group_id,
                                                        tiny_model, workers):
    produce_messages(kafka_bootstrap, topics, documents(3000))
    worker = start_worker(workers, bootstrap=kafka_bootstrap, topic=topics, group=group_id,
                          model=tiny_model, module="tests.integration.slow_worker", env=SLOW,
                          extra=[*EXACTLY_ONCE, "--group-instance-id", "pod-0",
                                 "--max-batch-size", "16"])
    outputs = TopicReader(kafka_bootstrap, f"{topics}-out", read_committed=True)
    try:
        outputs.wait_for(100, timeout_s=60)
    finally:
        outputs.close()
    # A newer instance with the same transactional id (<group>-<group_instance_id>) registers.
    usurper = KafkaProducer(bootstrap_servers=kafka_bootstrap, **CLIENT_TIMEOUTS,
                            transactional_id=f"{group_id}-pod-0")
    try:
        usurper.init_transactions()
        assert worker.wait(timeout_s=40) == 1
    finally:
        usurper.close(timeout=5)
    reason = worker.events("stopped")[-1]["reason"]
    assert "fenced" in reason and f"{group_id}-pod-0" in reason, reason
    # kafka-python reports ProducerFencedError, or (the fencing seen by EndTxn on Kafka 4)
    # an unhandled EndTxn error that leaves the producer in a fatal state: exit 1 either way.
    assert worker.events("transaction_fenced") or worker.events("transaction_fatal")
    assert "Traceback" not in worker.log_text()


@pytest.mark.timeout(120)
def test_read_committed_tail_shows_only_committed_outputs(kafka_bootstrap, topics, group_id,
                                                          tiny_model, workers):
    sent = documents(300)
    produce_messages(kafka_bootstrap, topics, sent)
    worker = _flaky_worker(kafka_bootstrap, topics, group_id, tiny_model, workers, "1")
    reader = TopicReader(kafka_bootstrap, f"{topics}-out", read_committed=True)
    try:
        reader.wait_for(len(sent), timeout_s=60)
    finally:
        reader.close()
    assert worker.stop() == 0
    tail = ["eurovoc-worker", "tail", "--topic", f"{topics}-out", "--bootstrap-servers",
            kafka_bootstrap, "--json", "--idle-timeout-s", "5"]
    committed = run_cli(*tail, "--read-committed")
    raw = run_cli(*tail)
    committed_ids = [orjson.loads(line)["id"] for line in committed.stdout.splitlines()]
    assert sorted(committed_ids) == sorted(key.decode() for key, _ in sent)
    assert len(raw.stdout.splitlines()) > len(committed_ids)  # the aborted first transaction
