"""Schema round trips, validation errors and drift of the committed JSON Schema files."""

from datetime import UTC, datetime

import orjson
import pytest
from pydantic import ValidationError

from schemas import (
    DEAD_LETTER_HEADERS,
    CheckpointManifest,
    DeadLetterHeaders,
    ErrorType,
    InputDocument,
    LabelScore,
    LabelsMessage,
    ModelInfo,
    SourceRef,
    decode_document,
    encode_message,
)
from schemas.codec import MAX_ERROR_CHARS, InvalidDocument
from schemas.dead_letter import replay_count
from schemas.generate import SCHEMA_DIR, render_schemas

SHA = "ab" * 32


def _labels_message() -> LabelsMessage:
    return LabelsMessage(
        id="32012R0001",
        labels=[LabelScore(id=3, name="trade", score=0.91), LabelScore(id=0, name="politics", score=0.6)],
        scores={"politics": 0.6, "trade": 0.91, "law": 0.1},
        thresholds={"politics": 0.5, "trade": 0.4, "law": 0.5},
        model=ModelInfo(name="minilm-cpu-quick", version="1", sha256=SHA),
        truncated=True,
        chunks=1,
        tokens=128,
        source=SourceRef(topic="docs", partition=2, offset=41),
        produced_at=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
    )


def test_committed_schema_files_match_the_models():
    rendered = render_schemas()
    committed = {path.name: path.read_bytes() for path in SCHEMA_DIR.glob("*.schema.json")}
    assert committed == rendered, "schemas drifted: run `make schemas` and commit schemas/json"


def test_document_round_trip_through_bytes():
    document = InputDocument(id="d1", text="Council regulation", title="T", metadata={"k": "v"})
    assert decode_document(encode_message(document)) == document


def test_document_ignores_unknown_fields():
    assert decode_document(b'{"id": "a", "text": "b", "extra": 1}') == InputDocument(id="a", text="b")


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"text": "x"}, "id"),
        ({"id": "", "text": "x"}, "id"),
        ({"id": "x" * 257, "text": "x"}, "id"),
        ({"id": "a"}, "text"),
        ({"id": "a", "text": "   "}, "text"),
        ({"id": "a", "text": 5}, "text"),
        ({"id": "a", "text": "t", "metadata": {"k": {"nested": 1}}}, "metadata"),
    ],
)
def test_invalid_documents_name_the_field(payload, field):
    with pytest.raises(InvalidDocument) as info:
        decode_document(orjson.dumps(payload))
    assert isinstance(info.value.__cause__, ValidationError)
    assert info.value.__cause__.errors()[0]["loc"][0] == field


@pytest.mark.parametrize(
    "value, error_type, message",
    [
        (b"\xff\xfe", ErrorType.NOT_UTF8, r"^not UTF-8: "),
        (b"{not json", ErrorType.NOT_JSON, r"^not JSON: "),
        ("{not json", ErrorType.NOT_JSON, r"^not JSON: "),
        (b"[1]", ErrorType.SCHEMA, r"^document must be a JSON object, got list$"),
        (b'{"id": "a", "text": " "}', ErrorType.EMPTY, r"^document text is empty$"),
        (b'{"id": "a", "text": 5}', ErrorType.SCHEMA, r"^text: "),
    ],
)
def test_decode_document_names_the_dead_letter_reason(value, error_type, message):
    with pytest.raises(InvalidDocument, match=message) as info:
        decode_document(value)
    assert info.value.error_type is error_type


def test_problems_are_at_most_five_and_500_characters():
    too_many = {"metadata": {str(i): i for i in range(20)}, "id": "a", "text": "t"}
    with pytest.raises(InvalidDocument, match=r"\.\.\. 15 more$"):
        decode_document(orjson.dumps(too_many))
    with pytest.raises(InvalidDocument) as info:
        decode_document(orjson.dumps({"id": "a", "text": "t", "metadata": {"k" * 600: 1}}))
    assert len(str(info.value)) == MAX_ERROR_CHARS


def test_fields_map_another_format_before_validation():
    eurlex = b'{"celex_id": "32012R0001", "text": "t"}'
    document = decode_document(eurlex, fields=lambda record: {**record, "id": record["celex_id"]})
    assert document.id == "32012R0001"
    with pytest.raises(InvalidDocument, match=r"^id: Field required"):
        decode_document(eurlex)


def test_labels_message_round_trip_and_rfc3339_time():
    message = _labels_message()
    wire = encode_message(message)
    assert orjson.loads(wire)["produced_at"] == "2026-11-25T12:00:00Z"
    assert LabelsMessage.model_validate_json(wire) == message


def test_labels_message_rejects_probability_out_of_range():
    with pytest.raises(ValidationError):
        LabelScore(id=0, name="x", score=1.5)


def test_dead_letter_headers_round_trip():
    headers = DeadLetterHeaders(
        error_type=ErrorType.NOT_JSON,
        error_message="unexpected character",
        source_topic="docs",
        source_partition=1,
        source_offset=7,
        worker_id="host-1",
        failed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    kafka_headers = headers.to_kafka_headers()
    assert [name for name, _ in kafka_headers] == list(DEAD_LETTER_HEADERS)
    assert dict(kafka_headers)["error.type"] == b"not_json"
    assert dict(kafka_headers)["schema.version"] == b"2"
    assert dict(kafka_headers)["replay.count"] == b"0"
    assert DeadLetterHeaders.from_kafka_headers(kafka_headers) == headers


def test_version_1_dead_letters_still_parse():
    version_1 = [("error.type", b"not_json"), ("error.message", b"x"), ("source.topic", b"docs"),
                 ("source.partition", b"0"), ("source.offset", b"3"), ("worker.id", b"w"),
                 ("failed_at", b"2026-11-25T12:00:00Z")]
    headers = DeadLetterHeaders.from_kafka_headers(version_1)
    assert (headers.schema_version, headers.replay_count) == (1, 0)
    nulls = DeadLetterHeaders.from_kafka_headers(version_1 + [("error.truncated_from", None)])
    assert nulls == headers  # a null header value is an absent header, never a crash


@pytest.mark.parametrize(
    ("headers", "count"),
    [(None, 0), ([], 0), ([("replay.count", b"3")], 3), ([("replay.count", b"x")], 0),
     ([("replay.count", b"-2")], 0), ([("other", b"5"), ("replay.count", b"1")], 1),
     ([("replay.count", None)], 0), ([("other", None), ("replay.count", b"4")], 4)],
)
def test_replay_count_of_a_record(headers, count):
    assert replay_count(headers) == count


def test_dead_letter_truncation_header_only_when_cut():
    headers = DeadLetterHeaders(
        error_type=ErrorType.TOO_LARGE, error_message="2000000 bytes", source_topic="docs",
        source_partition=0, source_offset=1, worker_id="w", failed_at=datetime.now(UTC),
        error_truncated_from=2_000_000,
    )
    kafka_headers = dict(headers.to_kafka_headers())
    assert kafka_headers["error.truncated_from"] == b"2000000"
    assert DeadLetterHeaders.from_kafka_headers(list(kafka_headers.items())) == headers


def _manifest(**overrides) -> dict:
    base = {
        "name": "m",
        "version": "1",
        "labels": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
        "thresholds": {"global": 0.4, "per_label": {"b": 0.7}, "at_least_one": True},
        "max_length": 128,
        "base_model": "minilm",
        "weights_sha256": SHA,
        "package_version": "0.1.0",
        "created_at": "2026-11-25T12:00:00Z",
    }
    return base | overrides


def test_manifest_threshold_vector_uses_global_for_missing_labels():
    manifest = CheckpointManifest.model_validate(_manifest())
    assert manifest.threshold_vector() == [0.4, 0.7]
    assert manifest.label_names == ["a", "b"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"labels": [{"id": 1, "name": "a"}]}, "label ids"),
        ({"labels": [{"id": 0, "name": "a"}, {"id": 1, "name": "a"}]}, "unique"),
        ({"thresholds": {"per_label": {"zzz": 0.3}}}, "unknown labels"),
        ({"weights_sha256": "nothex"}, "weights_sha256"),
    ],
)
def test_manifest_rejects_inconsistent_checkpoints(overrides, message):
    with pytest.raises(ValidationError, match=message):
        CheckpointManifest.model_validate(_manifest(**overrides))
