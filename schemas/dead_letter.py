"""Dead-letter records: the original key and value bytes, unchanged, with reason headers (or,
beyond the bounds below, as much of them as a dead letter holds, with headers saying what was cut,
its original size and its SHA-256).

The headers are versioned (``schema.version``): version 1 (no version header) had no
``replay.count``; version 2 adds it. ``replay.count`` is also the header that
``eurovoc-worker replay-dlq`` puts on the input records it republishes, and the worker copies it
into any new dead letter of such a record, so a record cannot be replayed forever.
"""

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

DEAD_LETTER_SCHEMA_VERSION = 2
REPLAY_COUNT_HEADER = "replay.count"


def _cut_size(alias: str, description: str):
    """An optional header: the original size of what a dead letter holds cut."""
    return Field(default=None, alias=alias, ge=0, description=description)


def _cut_hash(alias: str, description: str):
    """An optional header: the SHA-256 (hex) of what a dead letter holds cut."""
    return Field(default=None, alias=alias, pattern=r"^[0-9a-f]{64}$", description=description)


class ErrorType(StrEnum):
    """Why a record was dead-lettered (the ``error.type`` header)."""

    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    SCHEMA = "schema_violation"
    TOO_LARGE = "too_large"
    EMPTY = "empty_message"
    INFERENCE = "inference_failed"
    INVALID_HEADER = "invalid_header"  # a header the worker reads (replay.count) is unreadable


class DeadLetterHeaders(BaseModel):
    """The headers of a dead-letter record; field aliases are the header names."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    schema_version: int = Field(
        default=DEAD_LETTER_SCHEMA_VERSION,
        alias="schema.version",
        ge=1,
        le=DEAD_LETTER_SCHEMA_VERSION,
        description="Version of these headers; a dead letter without it is version 1.",
    )
    error_type: ErrorType = Field(alias="error.type")
    error_message: str = Field(alias="error.message")
    source_topic: str = Field(alias="source.topic")
    source_partition: int = Field(alias="source.partition", ge=0)
    source_offset: int = Field(alias="source.offset", ge=0)
    worker_id: str = Field(alias="worker.id")
    failed_at: datetime = Field(alias="failed_at")
    error_truncated_from: int | None = _cut_size(
        "error.truncated_from",
        "Original value size when the value had to be cut to fit the dead-letter topic; absent "
        "when the value is the original, unchanged.")
    error_truncated_sha256: str | None = _cut_hash(
        "error.truncated_sha256",
        "SHA-256 (hex) of the original value when it was cut; absent when the value is the "
        "original.")
    error_key_truncated_from: int | None = _cut_size(
        "error.key_truncated_from",
        "Original key size when the key had to be cut (keys are kept to 16 KiB); absent when the "
        "key is the original, unchanged.")
    error_key_sha256: str | None = _cut_hash(
        "error.key_sha256",
        "SHA-256 (hex) of the original key when it was cut; absent otherwise.")
    error_message_truncated_from: int | None = _cut_size(
        "error.message_truncated_from",
        "Original size in UTF-8 bytes of error.message when it was cut to keep the headers "
        "within their bound (16 KiB); absent when the message is whole.")
    replay_count: int = Field(
        default=0,
        alias=REPLAY_COUNT_HEADER,
        ge=0,
        description="How often the record had been replayed from the dead-letter topic before "
        "it failed again (0: never; absent in version 1).",
    )

    def to_kafka_headers(self) -> list[tuple[str, bytes]]:
        """Headers as kafka-python expects them: ``[(name, utf-8 bytes), ...]``; unset ones left out."""
        dumped = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return [(name, str(value).encode("utf-8")) for name, value in dumped.items()]

    @classmethod
    def from_kafka_headers(cls, headers: Iterable[tuple[str, bytes]]) -> "DeadLetterHeaders":
        """Parse a dead letter's headers, of any version (other headers are ignored)."""
        values = {name: value.decode("utf-8") for name, value in headers if value is not None}
        values.setdefault("schema.version", "1")
        return cls.model_validate(values)


MAX_KEY_BYTES = 16 * 1024
"""A dead letter's key is cut to this (headers ``error.key_truncated_from``,
``error.key_sha256``)."""
MAX_HEADERS_BYTES = 16 * 1024
"""A dead letter's header names and values together; ``error.message`` is cut to keep within it
(header ``error.message_truncated_from``)."""
_RECORD_OVERHEAD_BYTES = 1024
"""Above the key, value and header bytes of a dead letter: its batch's header (61 bytes) and the
varints of the record and of its (at most 14) headers."""


def dead_letter_bytes(max_value_bytes: int) -> int:
    """The most bytes a dead letter whose value is at most ``max_value_bytes`` takes, uncompressed,
    as kafka-python's ``send()`` counts it against ``max_request_size`` and as the dead-letter
    topic's ``max.message.bytes`` must hold it."""
    return max_value_bytes + MAX_KEY_BYTES + MAX_HEADERS_BYTES + _RECORD_OVERHEAD_BYTES


# A replay count is a decimal number of at most this many digits (one that fits an int64).
_MAX_COUNT_DIGITS = 18


def replay_count_problem(headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    """Why a record's ``replay.count`` header cannot be read, or None when it is absent or a
    count: ASCII digits, at most 18 of them, as ``replay-dlq`` writes it (surrounding whitespace
    allowed, as ``int()`` allows it; the first such header counts; a record whose count is
    unreadable is dead-lettered as ``invalid_header``)."""
    for name, value in headers or ():
        if name == REPLAY_COUNT_HEADER:
            if value is None:
                return f"the {REPLAY_COUNT_HEADER} header is null"
            digits = value.strip()
            if not (digits.isdigit() and len(digits) <= _MAX_COUNT_DIGITS):
                return (f"the {REPLAY_COUNT_HEADER} header is not a count of at most "
                        f"{_MAX_COUNT_DIGITS} ASCII digits: {value[:40]!r}")
            return None
    return None


def replay_count(headers: Iterable[tuple[str, bytes | None]] | None) -> int:
    """The ``replay.count`` header of a record (0 when absent or unreadable, see
    ``replay_count_problem``)."""
    for name, value in headers or ():
        if name == REPLAY_COUNT_HEADER:
            return 0 if replay_count_problem([(name, value)]) else int(value)
    return 0


# The headers every dead letter carries (optional ones, such as error.truncated_from, excluded).
DEAD_LETTER_HEADERS = tuple(
    field.alias for field in DeadLetterHeaders.model_fields.values() if field.default is not None
)
