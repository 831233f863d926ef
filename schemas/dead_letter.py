"""Dead-letter records: the original key and value bytes, unchanged, with reason headers."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class ErrorType(StrEnum):
    """Why a record was dead-lettered (the ``error.type`` header)."""

    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    SCHEMA = "schema_violation"
    TOO_LARGE = "too_large"
    EMPTY = "empty_message"
    INFERENCE = "inference_failed"


class DeadLetterHeaders(BaseModel):
    """The headers of a dead-letter record; field aliases are the header names."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    error_type: ErrorType = Field(alias="error.type")
    error_message: str = Field(alias="error.message")
    source_topic: str = Field(alias="source.topic")
    source_partition: int = Field(alias="source.partition", ge=0)
    source_offset: int = Field(alias="source.offset", ge=0)
    worker_id: str = Field(alias="worker.id")
    failed_at: datetime = Field(alias="failed_at")
    error_truncated_from: int | None = Field(
        default=None,
        alias="error.truncated_from",
        ge=0,
        description="Original value size when the value had to be cut to fit the dead-letter "
        "topic; absent when the value is the original, unchanged.",
    )

    def to_kafka_headers(self) -> list[tuple[str, bytes]]:
        """Headers as kafka-python expects them: ``[(name, utf-8 bytes), ...]``; unset ones left out."""
        dumped = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return [(name, str(value).encode("utf-8")) for name, value in dumped.items()]

    @classmethod
    def from_kafka_headers(cls, headers: list[tuple[str, bytes]]) -> "DeadLetterHeaders":
        return cls.model_validate({name: value.decode("utf-8") for name, value in headers})


# The headers every dead letter carries (optional ones, such as error.truncated_from, excluded).
DEAD_LETTER_HEADERS = tuple(
    field.alias for field in DeadLetterHeaders.model_fields.values() if field.is_required()
)
