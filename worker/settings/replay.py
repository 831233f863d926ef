"""Settings of ``eurovoc-worker replay-dlq``, and which dead letters it replays.

Sources like the worker's: flags, then ``EUROVOC_*`` variables (so a replay job can share the
workers' ConfigMap and Secret), then defaults; variables of other settings are ignored here.
"""

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.dead_letter import DeadLetterHeaders, ErrorType, dead_letter_bytes
from worker.settings.groups import DeadLetterSettings, ProducerSettings
from worker.settings.kafka_connection import KafkaConnectionSettings
from worker.settings.worker_settings import ENV_PREFIX

# The error.type values as a Literal, so that --help lists the values, not the enum's names.
ErrorTypeValue = Literal.__getitem__(tuple(error_type.value for error_type in ErrorType))


class Skip(StrEnum):
    """Why a dead letter is not replayed (the summary counts each)."""

    UNREADABLE = "unreadable_headers"  # not a dead letter of a known header version
    OTHER_TOPIC = "other_source_topic"  # it came from another input topic
    FILTERED = "filtered"  # outside the --error-types / partition / offset / time filters
    TRUNCATED = "truncated"  # its value or key was cut to fit the dead-letter topic: not the original
    EXHAUSTED = "max_replays"  # replayed max_replays times already


class ReplaySettings(KafkaConnectionSettings, BaseSettings):
    """eurovoc-worker replay-dlq: republish dead letters to the input topic."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", case_sensitive=False
    )

    dlq_topic: str = Field(min_length=1, description="Dead-letter topic to read.")
    input_topic: str = Field(
        min_length=1,
        description="Topic to republish to; only dead letters whose source.topic it is are "
        "replayed.",
    )
    replay_group_id: str | None = Field(
        default=None,
        min_length=1,
        description="Consumer group that records how far the replay got, so an interrupted "
        "replay resumes; default: eurovoc-replay.<dlq_topic>.<digest of the filters>.",
    )
    error_types: list[ErrorTypeValue] = Field(
        default_factory=list, description="Replay only these error.type values (default: all)."
    )
    source_partition: int | None = Field(
        default=None, ge=0, description="Replay only dead letters of this source.partition."
    )
    from_offset: int | None = Field(
        default=None, ge=0, description="Lowest source.offset to replay (with source_partition)."
    )
    to_offset: int | None = Field(
        default=None, ge=0, description="Highest source.offset to replay (with source_partition)."
    )
    since: datetime | None = Field(
        default=None, description="Replay only dead letters that failed at or after this time "
        "(ISO 8601; UTC when no zone is given)."
    )
    until: datetime | None = Field(
        default=None, description="Replay only dead letters that failed before this time."
    )
    max_replays: int = Field(
        default=3,
        ge=1,
        description="A dead letter whose record was already replayed this often (its replay.count "
        "header) is skipped: a record that keeps failing cannot loop forever.",
    )
    limit: int | None = Field(
        default=None, ge=1, description="Replay at most this many dead letters, then stop."
    )
    dlq_max_value_bytes: int = Field(
        default=DeadLetterSettings.model_fields["dlq_max_value_bytes"].default,
        ge=1024,
        description="The workers' dlq_max_value_bytes (the same EUROVOC_DLQ_MAX_VALUE_BYTES): "
        "the replay's producer sends records of this size plus their key and headers.",
    )
    max_request_size: int = Field(
        default=ProducerSettings.model_fields["max_request_size"].default,
        ge=1024,
        description="The workers' max_request_size (the same EUROVOC_MAX_REQUEST_SIZE): the "
        "replay's producer sends records up to the larger of it and dlq_max_value_bytes plus "
        "64 KiB, as the workers' producer does.",
    )
    dry_run: bool = Field(
        default=False,
        description="Print what would be replayed (one JSON line per dead letter); send and "
        "commit nothing.",
    )

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @model_validator(mode="after")
    def _check_ranges(self) -> "ReplaySettings":
        if self.dlq_topic == self.input_topic:
            raise ValueError("dlq_topic and input_topic must be different topics")
        if (self.from_offset is not None or self.to_offset is not None) and (
            self.source_partition is None
        ):
            raise ValueError("from_offset and to_offset need source_partition (offsets are per "
                             "partition)")
        if None not in (self.from_offset, self.to_offset) and self.from_offset > self.to_offset:
            raise ValueError(f"from_offset={self.from_offset} is above to_offset={self.to_offset}")
        if None not in (self.since, self.until) and self.since >= self.until:
            raise ValueError("since must be before until")
        return self

    @property
    def producer_max_request_size(self) -> int:
        """The replay producer's ``max_request_size``: the largest dead letter a worker with the
        same settings writes (a replayed record, its key and value and one header, is never
        larger than its dead letter)."""
        return max(self.max_request_size, dead_letter_bytes(self.dlq_max_value_bytes))

    @property
    def group_id(self) -> str:
        """The replay's consumer group: one per dead-letter topic and set of filters."""
        if self.replay_group_id:
            return self.replay_group_id
        filters = self.model_dump_json(include={
            "input_topic", "error_types", "source_partition", "from_offset", "to_offset",
            "since", "until", "max_replays"})
        return f"eurovoc-replay.{self.dlq_topic}.{hashlib.sha256(filters.encode()).hexdigest()[:10]}"

    def skip_reason(self, headers: DeadLetterHeaders) -> Skip | None:
        """Why this dead letter is not replayed, or None: replay it."""
        if headers.source_topic != self.input_topic:
            return Skip.OTHER_TOPIC
        if not self._selected(headers):
            return Skip.FILTERED
        if headers.error_truncated_from is not None or headers.error_key_truncated_from is not None:
            return Skip.TRUNCATED  # the original value or key is gone
        if headers.replay_count >= self.max_replays:
            return Skip.EXHAUSTED
        return None

    def _selected(self, headers: DeadLetterHeaders) -> bool:
        if self.error_types and headers.error_type not in self.error_types:
            return False
        if self.source_partition is not None and headers.source_partition != self.source_partition:
            return False
        if self.from_offset is not None and headers.source_offset < self.from_offset:
            return False
        if self.to_offset is not None and headers.source_offset > self.to_offset:
            return False
        failed_at = headers.failed_at if headers.failed_at.tzinfo else headers.failed_at.replace(tzinfo=UTC)
        if self.since is not None and failed_at < self.since:
            return False
        return self.until is None or failed_at < self.until
