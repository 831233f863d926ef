"""The groups of the worker's settings (the engine's are ``worker.inference.engine_settings``).

Each group is a frozen pydantic model; ``worker.settings.worker_settings.WorkerSettings`` nests
them. Field names are unique across all groups, which is what keeps the flat names (``--max-in-flight``,
``EUROVOC_MAX_IN_FLIGHT``, ``max_in_flight = 64`` in a file) working next to the grouped ones.
"""

import os
import socket
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from worker.settings.kafka_connection import KafkaConnectionSettings

MIB = 1024 * 1024
_FROZEN = ConfigDict(frozen=True, extra="forbid")


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class KafkaSettings(KafkaConnectionSettings):
    """Brokers and security (``worker.settings.kafka_connection``, shared with replay-dlq) and
    topics."""

    model_config = _FROZEN

    input_topic: str = Field(min_length=1, description="Topic of input documents.")
    output_topic: str = Field(min_length=1, description="Topic of label messages.")
    dlq_topic: str = Field(min_length=1, description="Dead-letter topic for unusable records.")
    create_topics: bool = Field(
        default=False,
        description="Create missing topics at start-up (else a missing topic stops the worker "
        "with exit code 2).",
    )
    create_topics_partitions: int = Field(
        default=3, ge=1, description="Partitions of topics created by --create-topics."
    )
    create_topics_replication_factor: int = Field(
        default=-1, ge=-1, description="Replicas of created topics; -1: the broker's default."
    )

    @model_validator(mode="after")
    def _check_topics(self) -> "KafkaSettings":
        if len({self.input_topic, self.output_topic, self.dlq_topic}) != 3:
            raise ValueError("input_topic, output_topic and dlq_topic must be three different topics")
        return self


class ConsumerSettings(BaseModel):
    """The consumer group, fetching, commits and rebalances."""

    model_config = _FROZEN

    group_id: str = Field(min_length=1, description="Consumer group of the workers.")
    group_instance_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="Static group membership id (e.g. a StatefulSet pod's name): a restart within "
        "session_timeout_ms takes its partitions back without a rebalance; a member that goes "
        "away for good holds them until its session times out.",
    )
    assignment_strategy: Literal["cooperative-sticky", "range", "roundrobin", "sticky"] = Field(
        default="cooperative-sticky",
        description="Partition assignor. cooperative-sticky moves only the partitions that "
        "change owner, lets a revoked partition finish its work without duplicates, and keeps "
        "every other partition flowing during a rebalance; the eager ones revoke everything.",
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a group without committed offsets starts."
    )
    session_timeout_ms: int = Field(
        default=45_000,
        ge=1000,
        description="Group session timeout: a crashed worker's partitions move after this long "
        "(broker-side min/max apply).",
    )
    heartbeat_interval_ms: int = Field(
        default=3000, ge=100, description="Heartbeat interval; at most a third of the session."
    )
    max_poll_interval_ms: int = Field(
        default=300_000,
        ge=1000,
        description="Longest gap between poll() calls before the member is evicted. The loop "
        "polls continuously (pausing partitions when full), so a slow model never hits it.",
    )
    max_poll_records: int = Field(default=500, ge=1, description="Most records per poll().")
    fetch_max_bytes: int = Field(
        default=16 * MIB, ge=1024, description="Soft cap on the data of one fetch response."
    )
    max_partition_fetch_bytes: int = Field(
        default=MIB, ge=1024, description="Soft cap on the data per partition in a fetch."
    )
    fetch_max_wait_ms: int = Field(
        default=100, ge=0, description="How long the broker may hold a fetch for more data."
    )
    poll_timeout_ms: int = Field(
        default=100,
        ge=1,
        description="Longest the idle loop sleeps between polls (poll() itself never blocks).",
    )
    commit_interval_ms: int = Field(
        default=1000, ge=10, description="How often finished offsets are committed."
    )
    commit_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest a synchronous commit (revoke, shutdown) takes."
    )
    revoke_timeout_s: float = Field(
        default=20.0,
        gt=0,
        description="On a partition revoke: how long its in-flight work may finish before it is "
        "dropped uncommitted (capped at 0.8 x max_poll_interval_ms, and at the drain deadline "
        "while stopping).",
    )
    max_message_bytes: int = Field(
        default=1_000_000,
        ge=16,
        description="Largest input record value; bigger ones are dead-lettered as too_large. "
        "At most dlq_max_value_bytes, and the dead-letter topic must hold it with a dead "
        "letter's key and headers (checked at start-up).",
    )
    max_in_flight_bytes: int = Field(
        default=64 * MIB,
        ge=1024,
        description="The second capacity knob: raw bytes (keys, values, headers) of the records "
        "read and not yet acknowledged (backlog, engine, unacknowledged outputs and dead "
        "letters). At this bound the worker pauses its partitions, as at max_in_flight; one "
        "poll() may overshoot it by what kafka-python had fetched (see docs/reliability.md).",
    )

    @model_validator(mode="after")
    def _check(self) -> "ConsumerSettings":
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(f"heartbeat_interval_ms={self.heartbeat_interval_ms} must be below "
                             f"session_timeout_ms={self.session_timeout_ms}")
        return self

    @property
    def revoke_deadline_s(self) -> float:
        """The revoke timeout in effect: the loop does not poll while it finishes revoked work."""
        return min(self.revoke_timeout_s, 0.8 * self.max_poll_interval_ms / 1000)


class ProducerSettings(BaseModel):
    """The idempotent producer of outputs and dead letters, and the delivery guarantee."""

    model_config = _FROZEN

    delivery: Literal["at-least-once", "exactly-once"] = Field(
        default="at-least-once",
        description="at-least-once: outputs are sent at once and offsets committed after their "
        "acknowledgement (a crash repeats some outputs). exactly-once: outputs, dead letters and "
        "input offsets are committed in one Kafka transaction every commit_interval_ms and the "
        "consumer reads read_committed (downstream must read read_committed too); costs latency.",
    )
    transactional_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="exactly-once: the producer's transactional id; default "
        "<group_id>-<group_instance_id>, else <group_id>-<worker_id> (worker_id holds the pid, "
        "so without a group_instance_id a restart gets a new id and zombies are fenced by the "
        "group generation check of KIP-447 instead).",
    )
    transaction_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        description="exactly-once: the broker aborts a transaction open this long (a crashed "
        "worker's); read_committed readers of its output partitions wait for it meanwhile.",
    )

    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="gzip",
        description="Producer compression (snappy, lz4, zstd need their Python packages).",
    )
    linger_ms: int = Field(default=5, ge=0, description="Producer linger: small batching delay.")
    producer_batch_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Producer batch size per partition."
    )
    producer_buffer_bytes: int = Field(
        default=32 * MIB,
        ge=MIB,
        description="Bytes of unacknowledged outputs the worker holds; at this bound the "
        "partitions pause.",
    )
    max_request_size: int = Field(
        default=MIB, ge=1024, description="Largest produce request (and so output record)."
    )
    delivery_timeout_ms: int = Field(
        default=60_000,
        ge=1000,
        description="How long the producer retries one record (in order, idempotently) before "
        "it fails; a failed record stops the worker (exit 1) after committing what was "
        "acknowledged.",
    )

    @model_validator(mode="after")
    def _check(self) -> "ProducerSettings":
        if self.compression_type != "none":
            from kafka import codec

            available = {"gzip": codec.has_gzip, "snappy": codec.has_snappy,
                         "lz4": codec.has_lz4, "zstd": codec.has_zstd}[self.compression_type]()
            if not available:
                raise ValueError(
                    f"compression_type={self.compression_type}: its Python package is not "
                    "installed")
        return self


class DeadLetterSettings(BaseModel):
    """Dead letters and the limit that stops a worker dead-lettering everything."""

    model_config = _FROZEN

    dlq_max_value_bytes: int = Field(
        default=1_000_000,
        ge=1024,
        description="Dead-letter values above this are cut to it (headers error.truncated_from, "
        "error.truncated_sha256); at least max_message_bytes, so that an accepted document "
        "is dead-lettered whole.",
    )
    dlq_max_consecutive: int = Field(
        default=100, ge=0, description="Stop (exit 3) after this many dead letters in a row; 0 "
        "disables."
    )
    dlq_max_ratio: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Stop (exit 3) when this share of the last dlq_ratio_window records was "
        "dead-lettered; 1 disables.",
    )
    dlq_ratio_window: int = Field(
        default=1000, ge=1, description="Records the dead-letter ratio is measured over."
    )


class OperationsSettings(BaseModel):
    """Identity, endpoints, health, shutdown and logs."""

    model_config = _FROZEN

    worker_id: str = Field(
        default_factory=default_worker_id,
        min_length=1,
        description="Name of this worker in logs, dead-letter headers and the Kafka client id; "
        "default: hostname-pid.",
    )
    metrics_host: str = Field(default="0.0.0.0", description="Address of the metrics server.")
    metrics_port: int = Field(
        default=9400,
        ge=-1,
        le=65535,
        description="Port of /metrics, /healthz and /readyz; 0 picks a free port (logged), "
        "-1 turns the server off.",
    )
    stall_timeout_s: float = Field(
        default=120.0,
        gt=0,
        validation_alias=AliasChoices("stall_timeout_s", "health_stall_s"),
        description="With work to do (lag, in-flight documents) and no progress (no batch "
        "scored, no output acknowledged, no records fetched) for this long, or with a loop "
        "that stopped iterating: log a diagnosis, /healthz 503, exit 1. Keep it above the "
        "slowest model batch. Old name: health_stall_s.",
    )
    drain_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="On SIGTERM/SIGINT: how long in-flight work may finish; the process exits "
        "within this + 5 s whatever is going on.",
    )
    lag_interval_s: float = Field(
        default=2.0, gt=0, description="How often the consumer-lag gauges are refreshed."
    )
    topic_check_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="How often the three topics are checked to still exist (a deleted one "
        "stops the worker, exit 1).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level."
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one JSON object per line; text: for humans."
    )
