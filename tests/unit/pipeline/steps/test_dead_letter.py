"""Dead-letter records (worker.pipeline.steps.dead_letter)."""

from schemas.dead_letter import DeadLetterHeaders, ErrorType
from worker.pipeline.steps.dead_letter import build_dead_letter

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
