"""Record bytes -> InputDocument or a rejection with its dead-letter reason (the decode step)."""

import orjson
import pytest

from schemas.dead_letter import ErrorType
from schemas.document import InputDocument
from worker.kafka.workarounds import RawHeaderKey
from worker.pipeline.steps.decode import DecodeStep, decode_record, decode_value
from worker.pipeline.work_items import Rejection, Stage, WorkItem


def test_a_good_document():
    doc = decode_value(orjson.dumps({"id": "d1", "text": "fish", "extra": 1}), 1000)
    assert isinstance(doc, InputDocument)
    assert (doc.id, doc.text) == ("d1", "fish")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"", ErrorType.EMPTY),
        (None, ErrorType.EMPTY),
        (b'{"id": "a", "text": ""}', ErrorType.EMPTY),
        (b'{"id": "a", "text": " \\n "}', ErrorType.EMPTY),
        (b"\xff\xfe\x00", ErrorType.NOT_UTF8),
        (b'{"id": "a", "text": "\xc3"}', ErrorType.NOT_UTF8),
        (bytes(range(256)), ErrorType.NOT_UTF8),
        (b"not json", ErrorType.NOT_JSON),
        (b'{"id": "a", "text": ', ErrorType.NOT_JSON),
        (b'{"id": "a"}', ErrorType.SCHEMA),
        (b'{"text": "x"}', ErrorType.SCHEMA),
        (b'{"id": 1, "text": "x"}', ErrorType.SCHEMA),
        (b'{"id": "a", "text": "x", "metadata": {"k": 1}}', ErrorType.SCHEMA),
        (b'{"id": "", "text": ""}', ErrorType.SCHEMA),
        (b"[1, 2]", ErrorType.SCHEMA),
        (b'"just a string"', ErrorType.SCHEMA),
        (b"null", ErrorType.SCHEMA),
    ],
)
def test_rejections_carry_their_reason(value, expected):
    result = decode_value(value, 1000)
    assert isinstance(result, Rejection)
    assert result.error_type is expected
    assert result.message


def test_too_large_is_checked_before_parsing():
    value = orjson.dumps({"id": "big", "text": "x" * 2000})
    result = decode_value(value, 1000)
    assert result.error_type is ErrorType.TOO_LARGE
    assert "1000" in result.message
    assert isinstance(decode_value(value, len(value)), InputDocument)


def test_schema_messages_name_the_field():
    result = decode_value(b'{"id": "a", "text": 5}', 1000)
    assert "text" in result.message


GOOD = orjson.dumps({"id": "d1", "text": "fish"})


@pytest.mark.parametrize(
    "headers",
    [None, [], [("replay.count", b"0")], [("replay.count", b"12"), ("replay.count", None)],
     [("trace", None), ("", b""), (RawHeaderKey(b"\xff\xfe".decode("utf-8", "surrogateescape")),
                                   b"\x00\xff")],
     [("replay.count", b"9" * 18)], [("replay.count", b" 4 ")]],
)
def test_headers_the_worker_does_not_read_do_not_matter(headers):
    assert isinstance(decode_record(GOOD, headers, 1000), InputDocument)


@pytest.mark.parametrize(
    ("value", "problem"),
    [(None, "null"), (b"", "not a count"), (b"junk", "junk"), (b"-2", "not a count"),
     (b"+2", "not a count"), (b" ", "not a count"), (b"1_0", "not a count"),
     (b"\xff\xfe", "not a count"), ("١".encode(), "not a count"), (b"9" * 19, "not a count")],
)
def test_an_unreadable_replay_count_is_an_invalid_header(value, problem):
    result = decode_record(GOOD, [("other", None), ("replay.count", value)], 1000)
    assert isinstance(result, Rejection)
    assert result.error_type is ErrorType.INVALID_HEADER
    assert "replay.count" in result.message and problem in result.message
    assert len(result.message) < 200


def test_the_values_own_problem_comes_first():
    result = decode_record(b"not json", [("replay.count", None)], 1000)
    assert result.error_type is ErrorType.NOT_JSON


class _Step:
    """Records what it was given."""

    def __init__(self) -> None:
        self.items: list[WorkItem] = []

    def submit(self, item: WorkItem) -> None:
        self.items.append(item)


def test_the_step_sends_an_unreadable_replay_count_to_dead_letters():
    labels, dead = _Step(), _Step()
    step = DecodeStep(labels, dead, 1000)
    fine = WorkItem(None, 0.0, value=GOOD, headers=[("x", None)])
    unreadable = WorkItem(None, 0.0, value=GOOD, headers=[("replay.count", None)])
    step.submit(fine)
    step.submit(unreadable)
    assert (labels.items, dead.items) == ([fine], [unreadable])
    assert unreadable.rejection.error_type is ErrorType.INVALID_HEADER
    assert fine.document.id == "d1" and fine.stage is Stage.TOKENIZE
