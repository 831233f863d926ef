"""Dead-letter records (worker.pipeline.steps.dead_letter)."""

import hashlib
from types import SimpleNamespace

import pytest
from kafka import TopicPartition
from kafka.record.default_records import DefaultRecordBatchBuilder

from schemas.dead_letter import (
    MAX_HEADERS_BYTES,
    MAX_KEY_BYTES,
    DeadLetterHeaders,
    ErrorType,
    dead_letter_bytes,
    replay_count,
)
from schemas.labels import SourceRef
from worker.kafka.topics import BROKER_DEFAULT_MAX_MESSAGE_BYTES
from worker.pipeline.dlq_policy import DlqPolicy
from worker.pipeline.in_flight import InFlightRegistry
from worker.pipeline.steps.dead_letter import (
    DeadLetterStep,
    build_dead_letter,
    record_bytes,
)
from worker.pipeline.work_items import Rejection, WorkItem
from worker.runtime.metrics import WorkerMetrics

TRUNCATED_HEADER = DeadLetterHeaders.model_fields["error_truncated_from"].alias


def _letter(value: bytes | None, max_value_bytes: int = 100):
    return build_dead_letter(
        key=b"k", value=value, error_type=ErrorType.NOT_JSON, message="not JSON",
        topic="in", partition=2, offset=41, worker_id="w-1", max_value_bytes=max_value_bytes,
    )


def test_dead_letter_keeps_the_original_bytes_and_names_the_source():
    letter = _letter(b"\x00garbage")
    assert (letter.key, letter.value) == (b"k", b"\x00garbage")
    headers = DeadLetterHeaders.from_kafka_headers(letter.headers)
    assert headers.error_type is ErrorType.NOT_JSON
    assert (headers.source_topic, headers.source_partition, headers.source_offset) == ("in", 2, 41)
    assert headers.worker_id == "w-1"


def test_a_value_too_big_to_produce_is_cut_and_marked():
    letter = _letter(b"x" * 500, max_value_bytes=100)
    assert letter.value == b"x" * 100
    assert (TRUNCATED_HEADER, b"500") in letter.headers
    DeadLetterHeaders.from_kafka_headers(letter.headers)  # still valid headers


def test_the_truncation_header_is_a_dead_letter_header_and_only_there_when_cut():
    cut = DeadLetterHeaders.from_kafka_headers(_letter(b"x" * 500, max_value_bytes=100).headers)
    assert cut.error_truncated_from == 500
    whole = _letter(b"x" * 100, max_value_bytes=100)
    assert TRUNCATED_HEADER not in dict(whole.headers)
    assert DeadLetterHeaders.from_kafka_headers(whole.headers).error_truncated_from is None


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


def _build(**overrides):
    arguments = {"key": b"k", "value": b"v", "error_type": ErrorType.NOT_JSON,
                 "message": "not JSON", "topic": "in", "partition": 0, "offset": 7,
                 "worker_id": "w-1", "max_value_bytes": 1_000_000, **overrides}
    return build_dead_letter(**arguments)


def _fits(letter, max_record_bytes: int) -> bool:
    """kafka-python's own record builder takes it, and within ``max_record_bytes``."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=2 * max_record_bytes)
    assert builder.append(0, timestamp=None, key=letter.key, value=letter.value,
                          headers=letter.headers) is not None
    return record_bytes(letter.key, letter.value, letter.headers) <= max_record_bytes


def test_a_large_key_is_cut_with_its_size_and_hash_and_the_value_kept_whole():
    key = bytes(range(256)) * 4400  # 1.1 MB: a producer that compresses gets it accepted
    letter = _build(key=key, value=b"not json")
    assert letter.key == key[:MAX_KEY_BYTES] and letter.value == b"not json"
    headers = dict(letter.headers)
    assert headers["error.key_truncated_from"] == str(len(key)).encode()
    assert headers["error.key_sha256"] == _sha256(key)
    assert "error.truncated_from" not in headers  # the value is the original
    parsed = DeadLetterHeaders.from_kafka_headers(letter.headers)
    assert parsed.error_key_truncated_from == len(key)
    assert _fits(letter, 1024 * 1024)


def test_a_cut_value_records_its_original_size_and_hash():
    value = b"x" * 500 + b"y"
    headers = dict(_letter(value, max_value_bytes=100).headers)
    assert headers["error.truncated_sha256"] == _sha256(value)
    assert "error.key_sha256" not in headers and "error.truncated_sha256" not in dict(
        _letter(b"x" * 100).headers)


def test_headers_stay_bounded_whatever_the_error_message():
    message = "\udcff" + "é" * 40_000  # a lone surrogate (lenient header decoding) and 80 kB
    letter = _build(message=message)
    assert sum(len(name.encode()) + len(value) for name, value in letter.headers) <= (
        MAX_HEADERS_BYTES)
    parsed = DeadLetterHeaders.from_kafka_headers(letter.headers)
    assert parsed.error_message.startswith("\\udcffé")
    assert parsed.error_message_truncated_from == len(message.encode("utf-8", "backslashreplace"))
    assert "error.message_truncated_from" not in dict(_build(message="short").headers)


@pytest.mark.parametrize("max_record_bytes", [1024 * 1024, 300_000, 40_000])
def test_the_whole_record_is_kept_within_the_producer_and_topic_limit(max_record_bytes):
    # The value limit alone would not do: the topic's limit (or the producer's) cuts further.
    value, key = b"v" * 2_000_000, b"k" * 100_000
    letter = _build(key=key, value=value, message="m" * 100_000, max_value_bytes=5_000_000,
                    max_record_bytes=max_record_bytes)
    assert _fits(letter, max_record_bytes)
    assert record_bytes(letter.key, letter.value, letter.headers) > max_record_bytes - 100
    assert dict(letter.headers)["error.truncated_from"] == b"2000000"
    assert dict(letter.headers)["error.truncated_sha256"] == _sha256(value)


def test_a_document_at_the_accepted_limit_is_dead_lettered_whole_in_a_default_topic():
    value = b"d" * 1_000_000  # max_message_bytes and dlq_max_value_bytes by default
    letter = _build(key=b"k" * MAX_KEY_BYTES, value=value, message="m" * 100_000,
                    max_record_bytes=BROKER_DEFAULT_MAX_MESSAGE_BYTES)
    assert letter.value == value and _fits(letter, BROKER_DEFAULT_MAX_MESSAGE_BYTES)
    assert record_bytes(letter.key, letter.value, letter.headers) <= dead_letter_bytes(
        len(value))


@pytest.mark.parametrize("replayed", [None, b"", b"\xff\xfe", b"seven", b"-3", b"9" * 5000])
def test_any_replay_count_header_is_read_as_a_count_without_crashing(replayed):
    registry = InFlightRegistry(WorkerMetrics())
    sent = []
    produce = SimpleNamespace(submit=sent.append)
    step = DeadLetterStep(produce, DlqPolicy(max_consecutive=0, max_ratio=1.0, window=10),
                          registry, topic="dlq", worker_id="w", max_value_bytes=1024,
                          max_record_bytes=64 * 1024)
    item = WorkItem(SourceRef(topic="in", partition=0, offset=3), 0.0, key=b"k" * 70_000,
                    value=b"v" * 70_000, headers=[("replay.count", replayed), ("x", None)],
                    rejection=Rejection(ErrorType.NOT_JSON, "not JSON"))
    registry.add(TopicPartition("in", 0), item)
    step.submit(item)
    [submitted] = sent
    output = submitted.output
    assert output.topic == "dlq"
    assert DeadLetterHeaders.from_kafka_headers(output.headers).replay_count == 0
    assert record_bytes(output.key, output.value, output.headers) <= 64 * 1024


def test_a_replay_count_is_carried_into_the_new_dead_letter():
    assert replay_count([("replay.count", b"2")]) == 2
    assert replay_count([("other", None), ("replay.count", b" 4 ")]) == 4
