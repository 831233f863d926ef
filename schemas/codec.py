"""Bytes <-> models: orjson on the wire, pydantic validation at the boundary."""

import orjson
from pydantic import BaseModel

from schemas.document import InputDocument


def encode_message(message: BaseModel) -> bytes:
    """Serialize any schema model to compact JSON bytes."""
    return orjson.dumps(message.model_dump(mode="json", by_alias=True))


def decode_document(value: bytes) -> InputDocument:
    """Parse and validate an input document.

    Raises ``UnicodeDecodeError`` for bytes that are not UTF-8, ``orjson.JSONDecodeError`` for text
    that is not JSON and ``pydantic.ValidationError`` for JSON that breaks the schema; callers map
    those to dead-letter reasons.
    """
    text = value.decode("utf-8")
    return InputDocument.model_validate(orjson.loads(text))
