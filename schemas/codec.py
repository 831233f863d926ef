"""Bytes <-> models: orjson on the wire, pydantic validation at the boundary."""

from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from schemas.dead_letter import ErrorType
from schemas.document import InputDocument
from schemas.validation import describe_validation_error

MAX_ERROR_CHARS = 500
"""The longest problem description (it travels in a dead letter's ``error.message`` header)."""
_MAX_PROBLEMS = 5


class InvalidDocument(ValueError):
    """JSON bytes or text that are not an ``InputDocument``: ``error_type`` is the dead-letter
    reason, the message (at most ``MAX_ERROR_CHARS``) says what is wrong."""

    def __init__(self, error_type: ErrorType, message: str) -> None:
        super().__init__(message[:MAX_ERROR_CHARS])
        self.error_type = error_type


def encode_message(message: BaseModel) -> bytes:
    """Serialize any schema model to compact JSON bytes."""
    return orjson.dumps(message.model_dump(mode="json", by_alias=True))


def decode_document(
    value: bytes | str,
    *,
    fields: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> InputDocument:
    """The document in one JSON object: the one parser of the worker's records and of document
    files. ``fields`` maps another format's object to the document's fields before validation
    (the files' EUR-Lex format). Raises ``InvalidDocument``.

    The good path is one ``orjson.loads`` plus one pydantic validation; the problem is only
    classified (not UTF-8 vs. not JSON, empty text vs. other schema errors) once it failed.
    """
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        if isinstance(value, bytes):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as utf8_exc:
                raise InvalidDocument(ErrorType.NOT_UTF8, f"not UTF-8: {utf8_exc}") from exc
        raise InvalidDocument(ErrorType.NOT_JSON, f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise InvalidDocument(ErrorType.SCHEMA,
                              f"document must be a JSON object, got {type(obj).__name__}")
    try:
        return InputDocument.model_validate(obj if fields is None else fields(obj))
    except ValidationError as exc:
        raise _schema_problem(exc) from exc


def _schema_problem(exc: ValidationError) -> InvalidDocument:
    errors = exc.errors(include_url=False, include_input=False)
    # Empty or blank text is its own reason; any other schema problem is a schema violation.
    if all(err["loc"][:1] == ("text",) and err["type"] in ("string_too_short", "value_error")
           for err in errors):
        return InvalidDocument(ErrorType.EMPTY, "document text is empty")
    return InvalidDocument(ErrorType.SCHEMA,
                           describe_validation_error(exc, whole="<document>", limit=_MAX_PROBLEMS))
