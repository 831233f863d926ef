"""``eurovoc-worker replay-dlq`` against the real broker: filters, keys kept, replay counts,
truncated values skipped, a resumable cursor, --dry-run, and the worker closing the loop."""

from __future__ import annotations

import subprocess
import sys
import uuid

import orjson
import pytest

from schemas.dead_letter import DeadLetterHeaders, ErrorType, replay_count
from tests.integration.worker_harness import REPO, TopicReader, WorkerProcess, documents
from tests.kafka_fixtures import (
    committed_offsets,
    consume_all,
    create_topic,
    end_offsets,
    produce_messages,
)
from worker.pipeline.steps.dead_letter import build_dead_letter

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def dead_letter(key: str, error_type: ErrorType, *, topic: str, offset: int, replays: int = 0,
                value: bytes | None = None, max_value_bytes: int = 10_000):
    letter = build_dead_letter(
        key=key.encode(), value=value or f"payload of {key}".encode(), error_type=error_type,
        message="test", topic=topic, partition=0, offset=offset, worker_id="w",
        max_value_bytes=max_value_bytes, replay_count=replays,
    )
    return letter


@pytest.fixture
def dlq(kafka_bootstrap: str):
    """A dead-letter topic holding one dead letter of each kind, and the input topic."""
    name = f"replay-{uuid.uuid4().hex}"
    create_topic(kafka_bootstrap, name, 2)
    create_topic(kafka_bootstrap, f"{name}.dlq", 2)
    letters = [
        dead_letter("a", ErrorType.NOT_JSON, topic=name, offset=1),
        dead_letter("b", ErrorType.INFERENCE, topic=name, offset=2, replays=1),
        dead_letter("c", ErrorType.NOT_JSON, topic=name, offset=3),
        dead_letter("d", ErrorType.SCHEMA, topic=name, offset=4),
        dead_letter("cut", ErrorType.TOO_LARGE, topic=name, offset=5, value=b"x" * 2000,
                    max_value_bytes=1024),
        dead_letter("tired", ErrorType.INFERENCE, topic=name, offset=6, replays=3),
        dead_letter("foreign", ErrorType.NOT_JSON, topic="some-other-input", offset=7),
    ]
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for letter in letters:
        producer.send(f"{name}.dlq", key=letter.key, value=letter.value, headers=letter.headers)
    producer.send(f"{name}.dlq", key=b"junk", value=b"no headers")
    producer.flush()
    producer.close()
    return name


def replay_dlq(bootstrap: str, topic: str, *args: str) -> tuple[int, list[dict], str]:
    result = subprocess.run(
        [sys.executable, "-m", "worker.commands.cli", "replay-dlq", "--bootstrap-servers", bootstrap,
         "--dlq-topic", f"{topic}.dlq", "--input-topic", topic, *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    lines = [orjson.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.returncode, lines, result.stderr


def test_dry_run_shows_every_decision_and_sends_nothing(kafka_bootstrap, dlq):
    code, lines, stderr = replay_dlq(kafka_bootstrap, dlq, "--dry-run")
    assert code == 0, stderr
    *decisions, summary = lines
    actions = {line["key"]: line["action"] for line in decisions}
    assert actions == {
        "a": "replay", "b": "replay", "c": "replay", "d": "replay",
        "cut": "skip: truncated", "tired": "skip: max_replays",
        "foreign": "skip: other_source_topic", "junk": "skip: unreadable_headers",
    }
    assert summary["summary"]["replayed"] == 4 and summary["summary"]["complete"] is True
    assert sum(end_offsets(kafka_bootstrap, dlq).values()) == 0  # nothing sent
    assert committed_offsets(kafka_bootstrap, summary["summary"]["group_id"], f"{dlq}.dlq") == {}


def test_a_filtered_replay_keeps_keys_counts_replays_and_resumes(kafka_bootstrap, dlq):
    # first run: stopped by --limit after one record, as an interrupted replay would be
    code, [first], stderr = replay_dlq(kafka_bootstrap, dlq, "--error-types", "not_json,inference_failed",
                                       "--limit", "1")
    assert code == 0, stderr
    assert (first["summary"]["replayed"], first["summary"]["complete"]) == (1, False)
    code, [second], stderr = replay_dlq(kafka_bootstrap, dlq, "--error-types", "not_json,inference_failed")
    assert code == 0, stderr
    assert second["summary"]["group_id"] == first["summary"]["group_id"]
    assert second["summary"]["replayed"] == 2 and second["summary"]["complete"] is True
    skipped = [run["summary"]["skipped"] for run in (first, second)]
    assert sum(s.get("filtered", 0) for s in skipped) == 2  # "d" and "cut": not in the filter
    assert sum(s.get("max_replays", 0) for s in skipped) == 1  # "tired"
    replayed = consume_all(kafka_bootstrap, dlq, 3)
    assert sorted(record.key for record in replayed) == [b"a", b"b", b"c"]  # each exactly once
    for record in replayed:
        assert record.value == b"payload of " + record.key
        assert replay_count(record.headers) == (2 if record.key == b"b" else 1)
    # a third run finds nothing new
    code, [third], _ = replay_dlq(kafka_bootstrap, dlq, "--error-types", "not_json,inference_failed")
    assert (code, third["summary"]["read"], third["summary"]["replayed"]) == (0, 0, 0)


def test_invalid_settings_exit_2(kafka_bootstrap, dlq):
    code, _, stderr = replay_dlq(kafka_bootstrap, dlq, "--from-offset", "3")
    assert code == 2 and "source_partition" in stderr
    code, _, stderr = replay_dlq(kafka_bootstrap, "no-such-topic-" + uuid.uuid4().hex)
    assert code == 1 and "does not exist" in stderr


def test_a_record_that_keeps_failing_stops_after_max_replays(kafka_bootstrap, tiny_model):
    """Worker -> dead letter -> replay -> worker -> dead letter with replay.count 1 -> ... -> skipped."""
    topic = f"loop-{uuid.uuid4().hex}"
    for name in (topic, f"{topic}-out", f"{topic}-dlq"):
        create_topic(kafka_bootstrap, name, 1)
    produce_messages(kafka_bootstrap, topic, [(b"poison", b"{not json"), *documents(2)])
    worker = WorkerProcess(bootstrap=kafka_bootstrap, topic=topic, group=f"g-{uuid.uuid4().hex}",
                           model=tiny_model).start()
    dead = TopicReader(kafka_bootstrap, f"{topic}-dlq")
    try:
        for round_ in range(3):  # two replays allowed, the third run skips it
            dead.wait_for(round_ + 1, timeout_s=60)
            headers = DeadLetterHeaders.from_kafka_headers(dead.records[round_].headers)
            assert (headers.replay_count, dead.records[round_].key) == (round_, b"poison")
            result = subprocess.run(
                [sys.executable, "-m", "worker.commands.cli", "replay-dlq", "--bootstrap-servers",
                 kafka_bootstrap, "--dlq-topic", f"{topic}-dlq", "--input-topic", topic,
                 "--max-replays", "2", "--replay-group-id", f"replay-{topic}"],
                cwd=REPO, capture_output=True, text=True, timeout=120)
            summary = orjson.loads(result.stdout.splitlines()[-1])["summary"]
            expected = (1, {}) if round_ < 2 else (0, {"max_replays": 1})
            assert (summary["replayed"], summary["skipped"]) == expected, result.stderr
        dead.poll(timeout_ms=2000)
        assert len(dead.records) == 3  # no fourth dead letter: the loop ended
    finally:
        dead.close()
        assert worker.stop() == 0


def test_the_dead_letters_of_an_aborted_transaction_are_not_replayed(kafka_bootstrap):
    """An exactly-once worker's aborted transaction leaves its dead-letter copies in the log;
    replayed beside the committed ones they would be duplicates downstream."""
    from kafka import KafkaProducer

    name = f"replay-txn-{uuid.uuid4().hex}"
    create_topic(kafka_bootstrap, name, 1)
    create_topic(kafka_bootstrap, f"{name}.dlq", 1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"t-{name}")
    try:
        producer.init_transactions()
        for key, commit in (("aborted", False), ("committed", True), ("aborted-again", False)):
            letter = dead_letter(key, ErrorType.INFERENCE, topic=name, offset=len(key))
            producer.begin_transaction()
            producer.send(f"{name}.dlq", key=letter.key, value=letter.value,
                          headers=letter.headers)
            producer.flush()
            (producer.commit_transaction if commit else producer.abort_transaction)()
    finally:
        producer.close()
    # the aborted copies are in the log: a read_uncommitted reader gets them
    in_log = consume_all(kafka_bootstrap, f"{name}.dlq", 3)
    assert sorted(record.key for record in in_log) == [b"aborted", b"aborted-again", b"committed"]
    code, [summary], stderr = replay_dlq(kafka_bootstrap, name)
    assert code == 0, stderr
    summary = summary["summary"]
    assert (summary["read"], summary["replayed"], summary["complete"]) == (1, 1, True)
    [replayed] = consume_all(kafka_bootstrap, name, 1)
    assert replayed.key == b"committed" and end_offsets(kafka_bootstrap, name) == {0: 1}


def test_the_largest_dead_letter_a_worker_writes_is_replayed(kafka_bootstrap):
    """dlq_max_value_bytes above kafka-python's default max_request_size (1 MiB): the replay's
    producer, set from the workers' settings, sends a dead letter of that size."""
    from kafka import KafkaProducer

    limit = 1_500_000
    name = f"replay-big-{uuid.uuid4().hex}"
    for topic in (name, f"{name}.dlq"):
        create_topic(kafka_bootstrap, topic, 1, configs={"max.message.bytes": str(2 * limit)})
    letter = dead_letter("big", ErrorType.INFERENCE, topic=name, offset=1, value=b"x" * limit,
                         max_value_bytes=limit)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=2 * limit)
    producer.send(f"{name}.dlq", key=letter.key, value=letter.value, headers=letter.headers)
    producer.flush()
    producer.close()
    code, [summary], stderr = replay_dlq(kafka_bootstrap, name, "--dlq-max-value-bytes",
                                         str(limit))
    assert code == 0, stderr
    assert summary["summary"]["replayed"] == 1
    [replayed] = consume_all(kafka_bootstrap, name, 1)
    assert (replayed.key, len(replayed.value)) == (b"big", limit)
