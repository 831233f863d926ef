"""`eurovoc-worker produce` and `tail` (worker.commands.produce, worker.commands.tail) against the
real broker."""

import time
from datetime import UTC, datetime

import orjson
import pytest

from schemas import InputDocument, LabelScore, LabelsMessage, ModelInfo, encode_message
from tests.e2e.cli_runner import run_cli
from tests.kafka_fixtures import consume_all, free_ports, produce_messages

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _write_docs(path, count):
    path.write_bytes(b"".join(
        orjson.dumps({"celex_id": f"doc-{index}", "text": f"Council regulation {index}", "labels": [1]})
        + b"\n"
        for index in range(count)
    ))
    return path


def test_produce_publishes_every_document_keyed_by_id(kafka_bootstrap, new_topic, tmp_path):
    path = _write_docs(tmp_path / "docs.jsonl", 50)
    result = run_cli("eurovoc-worker", "produce", str(path), "--topic", new_topic,
                     "--bootstrap-servers", kafka_bootstrap)
    assert result.returncode == 0, result.stderr
    records = consume_all(kafka_bootstrap, new_topic, 50)
    documents = [InputDocument.model_validate_json(record.value) for record in records]
    assert sorted(d.id for d in documents) == sorted(f"doc-{i}" for i in range(50))
    assert all(record.key.decode() == InputDocument.model_validate_json(record.value).id
               for record in records)


def test_produce_limit_and_topic_creation(kafka_bootstrap, tmp_path):
    path = _write_docs(tmp_path / "docs.jsonl", 20)
    topic = f"created-{time.time_ns()}"
    result = run_cli("eurovoc-worker", "produce", str(path), "--topic", topic, "--limit", "7",
                     "--partitions", "2", "--bootstrap-servers", kafka_bootstrap)
    assert result.returncode == 0, result.stderr
    assert len(consume_all(kafka_bootstrap, topic, 7)) == 7


def test_produce_bad_file_fails_fast_naming_the_line(kafka_bootstrap, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n{"id": "b"}\n')
    started = time.monotonic()
    result = run_cli("eurovoc-worker", "produce", str(path), "--topic", "never-used",
                     "--bootstrap-servers", kafka_bootstrap)
    assert result.returncode != 0
    assert "bad.jsonl:2" in result.stderr and "text" in result.stderr
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("command", [["produce"], ["produce", "--partitions", "2"], ["tail"]])
def test_unreachable_broker_is_a_clear_error_not_a_hang(tmp_path, command):
    (port,) = free_ports(1)
    path = _write_docs(tmp_path / "docs.jsonl", 1)
    args = [str(path)] if command[0] == "produce" else []
    result = run_cli("eurovoc-worker", *command, *args, "--topic", "t", "--timeout-s", "3",
                     "--bootstrap-servers", f"127.0.0.1:{port}", timeout=60)
    assert result.returncode == 1
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in result.stderr


def test_tail_prints_decoded_labels(kafka_bootstrap, new_topic):
    message = LabelsMessage(
        id="32013R0001",
        labels=[LabelScore(id=2, name="trade", score=0.93)],
        scores={"trade": 0.93, "law": 0.2},
        thresholds={"trade": 0.5, "law": 0.5},
        model=ModelInfo(name="m", version="1", sha256="0" * 64),
        truncated=True, chunks=1, tokens=128,
        produced_at=datetime.now(UTC),
    )
    produce_messages(kafka_bootstrap, new_topic, [(b"32013R0001", encode_message(message))])
    result = run_cli("eurovoc-worker", "tail", "--topic", new_topic, "--max-messages", "1",
                     "--bootstrap-servers", kafka_bootstrap)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "32013R0001\ttrade (0.93)  [truncated at 128 tokens]"
