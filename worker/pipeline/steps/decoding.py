"""Record value bytes -> ``InputDocument`` or a typed rejection (the dead-letter reason).

The good path is one ``orjson.loads`` on the bytes plus one pydantic validation; the error
classification (not UTF-8 vs. not JSON, empty text vs. other schema errors) only runs for records
that already failed. Consistent with ``schemas.codec.decode_document``.
"""

import orjson
from pydantic import ValidationError

from schemas.dead_letter import ErrorType
from schemas.document import InputDocument
from worker.pipeline.work_items import Rejection

_MAX_ERROR_CHARS = 500


def describe_validation_error(
    exc: ValidationError, *, whole: str, limit: int | None = None
) -> str:
    """``"field: problem; other.field: problem"``; ``whole`` names an error of the whole object.

    With ``limit``, at most that many problems are listed, then ``... N more``.
    """
    errors = exc.errors(include_url=False, include_input=False)
    shown = errors if limit is None else errors[:limit]
    parts = [f"{'.'.join(str(part) for part in err['loc']) or whole}: {err['msg']}"
             for err in shown]
    if len(errors) > len(shown):
        parts.append(f"... {len(errors) - len(shown)} more")
    return "; ".join(parts)


def _validation_rejection(exc: ValidationError) -> Rejection:
    errors = exc.errors(include_url=False, include_input=False)
    # Empty or blank text is its own reason; any other schema problem is a schema violation.
    if all(err["loc"][:1] == ("text",) and err["type"] in ("string_too_short", "value_error")
           for err in errors):
        return Rejection(ErrorType.EMPTY, "document text is empty")
    message = describe_validation_error(exc, whole="<document>", limit=5)
    return Rejection(ErrorType.SCHEMA, message[:_MAX_ERROR_CHARS])


def decode_value(value: bytes | None, max_bytes: int) -> InputDocument | Rejection:
    """Decode and validate one record value; never raises for bad input."""
    if not value:
        return Rejection(ErrorType.EMPTY, "record value is empty" if value is not None
                         else "record value is null (tombstone)")
    if len(value) > max_bytes:
        return Rejection(ErrorType.TOO_LARGE,
                         f"record value is {len(value)} bytes, the limit is {max_bytes}")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as utf8_exc:
            return Rejection(ErrorType.NOT_UTF8, f"not UTF-8: {utf8_exc}"[:_MAX_ERROR_CHARS])
        return Rejection(ErrorType.NOT_JSON, f"not JSON: {exc}"[:_MAX_ERROR_CHARS])
    if not isinstance(obj, dict):
        return Rejection(ErrorType.SCHEMA,
                         f"document must be a JSON object, got {type(obj).__name__}")
    try:
        return InputDocument.model_validate(obj)
    except ValidationError as exc:
        return _validation_rejection(exc)
