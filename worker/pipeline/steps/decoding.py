"""Record value bytes -> ``InputDocument`` or a typed rejection (the dead-letter reason).

The record's own checks (tombstone, empty, too large) come first; the value is then parsed by
``schemas.codec.decode_document``, the one document parser (document files use it too).
"""

from schemas.codec import InvalidDocument, decode_document
from schemas.dead_letter import ErrorType
from schemas.document import InputDocument
from worker.pipeline.work_items import Rejection


def decode_value(value: bytes | None, max_bytes: int) -> InputDocument | Rejection:
    """Decode and validate one record value; never raises for bad input."""
    if not value:
        return Rejection(ErrorType.EMPTY, "record value is empty" if value is not None
                         else "record value is null (tombstone)")
    if len(value) > max_bytes:
        return Rejection(ErrorType.TOO_LARGE,
                         f"record value is {len(value)} bytes, the limit is {max_bytes}")
    try:
        return decode_document(value)
    except InvalidDocument as exc:
        return Rejection(exc.error_type, str(exc))
