"""Record bytes -> InputDocument or a rejection with its dead-letter reason (the decode step)."""

import orjson
import pytest

from schemas.dead_letter import ErrorType
from schemas.document import InputDocument
from worker.pipeline.steps.decode import decode_value
from worker.pipeline.work_items import Rejection


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
