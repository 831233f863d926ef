"""Dead-letter records and the DLQ limit (worker.pipeline.dlq_policy)."""

from schemas.dead_letter import DeadLetterHeaders, ErrorType
from worker.pipeline.dlq_policy import TRUNCATED_HEADER, DlqPolicy, build_dead_letter


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


def test_consecutive_limit():
    policy = DlqPolicy(max_consecutive=3, max_ratio=1.0)
    for _ in range(2):
        assert policy.check("not_json") is None
        policy.record_dead_letter("not_json")
    cause = policy.check("not_json")
    assert cause is not None and "3 consecutive" in cause and "not_json" in cause
    policy.record_ok()
    assert policy.check("not_json") is None  # a good record resets the run


def test_ratio_limit_over_a_window():
    policy = DlqPolicy(max_consecutive=0, max_ratio=0.5, window=10, min_samples=10)
    for _ in range(5):
        policy.record_ok()
    for _ in range(3):
        assert policy.check("schema_violation") is None
        policy.record_dead_letter("schema_violation")
    policy.record_ok()
    # 10th record: 4 bad of 10 is below 50 %
    assert policy.check("schema_violation") is None
    policy.record_dead_letter("schema_violation")
    # window slides: the oldest (good) falls out -> 5 bad of 10
    cause = policy.check("schema_violation")
    assert cause is not None and "of the last 10" in cause


def test_ratio_needs_enough_samples_first():
    policy = DlqPolicy(max_consecutive=100, max_ratio=0.5, window=1000, min_samples=100)
    assert policy.check("not_json") is None  # 1 of 1 is not yet "50 % of the last 1000"
    policy.record_dead_letter("not_json")
    policy.record_ok()
    assert policy.check("not_json") is None


def test_defaults_trip_on_a_wrong_topic():
    policy = DlqPolicy()
    tripped_at = None
    for index in range(1, 500):
        if policy.check("not_json"):
            tripped_at = index
            break
        policy.record_dead_letter("not_json")
    assert tripped_at == 100


def test_defaults_tolerate_sparse_poison():
    policy = DlqPolicy()
    for index in range(5000):
        if index % 3 == 0:
            assert policy.check("schema_violation") is None
            policy.record_dead_letter("schema_violation")
        else:
            policy.record_ok()


def test_the_truncation_header_is_a_dead_letter_header_and_only_there_when_cut():
    cut = DeadLetterHeaders.from_kafka_headers(_letter(b"x" * 500, max_value_bytes=100).headers)
    assert cut.error_truncated_from == 500
    whole = _letter(b"x" * 100, max_value_bytes=100)
    assert TRUNCATED_HEADER not in dict(whole.headers)
    assert DeadLetterHeaders.from_kafka_headers(whole.headers).error_truncated_from is None
