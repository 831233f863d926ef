"""Worker settings: engine and Kafka connection settings plus topics, delivery, dead-letter and
operations settings.

Sources, highest priority first: command-line flags (``eurovoc-worker run --help``), ``EUROVOC_*``
environment variables (``EUROVOC_BOOTSTRAP_SERVERS``, ``EUROVOC_MAX_IN_FLIGHT``...), an optional
JSON or TOML file (``--config FILE`` or ``EUROVOC_CONFIG``), then the defaults below. Settings are
validated once at start-up; an invalid value stops the worker with a message naming the setting.
"""

import argparse
import os
import socket
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    CliSettingsSource,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from worker.engine_config import EngineSettings
from worker.kafka_settings import KafkaConnectionSettings

ENV_PREFIX = "EUROVOC_"
CONFIG_ENV = "EUROVOC_CONFIG"
MIB = 1024 * 1024

# The file named by --config / EUROVOC_CONFIG while settings are being built (see load_settings).
_config_file: ContextVar[Path | None] = ContextVar("eurovoc_config_file", default=None)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(EngineSettings, KafkaConnectionSettings, BaseSettings):
    """eurovoc-worker run: consume documents, classify them in micro-batches, publish labels."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        case_sensitive=False,
        validate_default=True,
    )

    # --- Kafka topics and group -----------------------------------------------------------
    input_topic: str = Field(min_length=1, description="Topic of input documents.")
    output_topic: str = Field(min_length=1, description="Topic of label messages.")
    dlq_topic: str = Field(min_length=1, description="Dead-letter topic for unusable records.")
    group_id: str = Field(min_length=1, description="Consumer group of the workers.")
    group_instance_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="Static group membership id (e.g. the Kubernetes pod name of a StatefulSet); "
        "a restart within session_timeout_ms then causes no rebalance.",
    )
    worker_id: str = Field(
        default_factory=default_worker_id,
        min_length=1,
        description="Name of this worker in logs, dead-letter headers and the Kafka client id; "
        "default: hostname-pid.",
    )
    assignment_strategy: Literal["cooperative-sticky", "range", "roundrobin", "sticky"] = Field(
        default="cooperative-sticky",
        description="Partition assignor. cooperative-sticky moves only the partitions that "
        "change owner and lets a revoked partition finish its work without duplicates; the eager "
        "ones revoke everything on every rebalance.",
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a group without committed offsets starts."
    )

    # --- consumer --------------------------------------------------------------------------
    session_timeout_ms: int = Field(
        default=45_000, ge=1000, description="Group session timeout (broker-side min/max apply)."
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

    # --- producer --------------------------------------------------------------------------
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="gzip",
        description="Producer compression (snappy, lz4, zstd need their Python packages).",
    )
    linger_ms: int = Field(default=5, ge=0, description="Producer linger: small batching delay.")
    producer_batch_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Producer batch size per partition."
    )
    max_request_size: int = Field(
        default=MIB, ge=1024, description="Largest produce request (and so output record)."
    )
    delivery_timeout_ms: int = Field(
        default=60_000,
        ge=1000,
        description="How long the producer retries one record before reporting it failed.",
    )
    delivery_retries: int = Field(
        default=3,
        ge=0,
        description="Re-sends of a record whose delivery failed; then the worker stops (exit 1).",
    )

    # --- the loop --------------------------------------------------------------------------
    max_in_flight: int = Field(
        default=256,
        ge=1,
        description="Documents consumed but not yet acknowledged; at this bound the partitions "
        "are paused (polling goes on) until half of them are done.",
    )
    commit_interval_ms: int = Field(
        default=1000, ge=10, description="How often finished offsets are committed."
    )
    poll_timeout_ms: int = Field(
        default=100, ge=1, description="Longest a poll() waits for records when idle."
    )
    drain_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="On SIGTERM/SIGINT: how long in-flight work may finish before exit.",
    )
    revoke_timeout_s: float = Field(
        default=20.0,
        gt=0,
        description="On a partition revoke: how long its in-flight work may finish before it is "
        "dropped uncommitted (capped at 0.8 x max_poll_interval_ms).",
    )
    commit_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest one synchronous offset commit may take."
    )

    # --- input limits and dead letters -------------------------------------------------------
    max_message_bytes: int = Field(
        default=MIB,
        ge=16,
        description="Largest input record value; bigger ones are dead-lettered as too_large.",
    )
    dlq_max_value_bytes: int = Field(
        default=1_000_000,
        ge=1024,
        description="Dead-letter values above this are cut to it (header error.truncated_from).",
    )
    dlq_max_consecutive: int = Field(
        default=100,
        ge=0,
        description="Stop (exit 3) after this many dead letters in a row; 0 disables.",
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

    # --- operations --------------------------------------------------------------------------
    metrics_host: str = Field(default="0.0.0.0", description="Address of the metrics server.")
    metrics_port: int = Field(
        default=9400,
        ge=-1,
        le=65535,
        description="Port of /metrics, /healthz and /readyz; 0 picks a free port (logged), "
        "-1 turns the server off.",
    )
    health_stall_s: float = Field(
        default=60.0,
        gt=0,
        description="/healthz answers 503 when the loop has not completed an iteration for "
        "this long.",
    )
    lag_interval_s: float = Field(
        default=2.0, gt=0, description="How often the consumer-lag gauges are refreshed."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level."
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one JSON object per line; text: for humans."
    )

    @model_validator(mode="after")
    def _check_worker_relations(self) -> "WorkerSettings":
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms={self.heartbeat_interval_ms} must be below "
                f"session_timeout_ms={self.session_timeout_ms}"
            )
        if self.request_timeout_ms <= self.fetch_max_wait_ms:
            raise ValueError(
                f"request_timeout_ms={self.request_timeout_ms} must be above "
                f"fetch_max_wait_ms={self.fetch_max_wait_ms}"
            )
        if self.max_in_flight > self.max_queued_documents:
            raise ValueError(
                f"max_in_flight={self.max_in_flight} must not exceed "
                f"max_queued_documents={self.max_queued_documents} (the engine's queue bound)"
            )
        if len({self.input_topic, self.output_topic, self.dlq_topic}) != 3:
            raise ValueError(
                "input_topic, output_topic and dlq_topic must be three different topics"
            )
        if self.compression_type != "none":
            from kafka import codec

            available = {
                "gzip": codec.has_gzip,
                "snappy": codec.has_snappy,
                "lz4": codec.has_lz4,
                "zstd": codec.has_zstd,
            }[self.compression_type]()
            if not available:
                raise ValueError(
                    f"compression_type={self.compression_type}: its Python package is not "
                    "installed"
                )
        return self

    @property
    def revoke_deadline_s(self) -> float:
        """The revoke timeout in effect: the loop does not poll while it finishes revoked work."""
        return min(self.revoke_timeout_s, 0.8 * self.max_poll_interval_ms / 1000)

    def engine_settings(self) -> EngineSettings:
        """Just the engine's fields, as the engine's own settings model."""
        return EngineSettings.model_validate(
            {name: getattr(self, name) for name in EngineSettings.model_fields}
        )

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON-able values, secrets masked (for the start-up log)."""
        return self.model_dump(mode="json")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file.get()
        if path is not None:
            if path.suffix.lower() == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(JsonConfigSettingsSource(settings_cls, json_file=path))
        return tuple(sources)


class ConfigFileError(ValueError):
    """The --config file is missing or has an unsupported suffix."""


def load_settings(config_file: Path | str | None = None, **kwargs: Any) -> WorkerSettings:
    """Build settings from ``kwargs`` (or a CLI source), the environment and an optional file.

    ``config_file`` defaults to ``$EUROVOC_CONFIG``; ``.json`` and ``.toml`` files are read.
    """
    if config_file is None and os.environ.get(CONFIG_ENV):
        config_file = os.environ[CONFIG_ENV]
    path = Path(config_file) if config_file else None
    if path is not None:
        if not path.is_file():
            raise ConfigFileError(f"config file {path}: no such file")
        if path.suffix.lower() not in (".json", ".toml"):
            raise ConfigFileError(f"config file {path}: use a .json or .toml file")
    token = _config_file.set(path)
    try:
        return WorkerSettings(**kwargs)
    finally:
        _config_file.reset(token)


# -- command line ------------------------------------------------------------------------------


def add_settings_flags(parser: argparse.ArgumentParser, settings_cls: type[BaseSettings]):
    """One flag per field of ``settings_cls`` on ``parser``: ``--kebab-case``, ``--x/--no-x`` for
    booleans, choices for literals, the field's description and default as help.

    Returns the ``CliSettingsSource`` that :func:`flag_values` turns parsed flags into.
    """
    return CliSettingsSource(
        settings_cls,
        root_parser=parser,
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_hide_none_type=True,
        cli_avoid_json=True,
    )


def flag_values(source: CliSettingsSource, args: argparse.Namespace) -> CliSettingsSource:
    """``source`` loaded with the flags given in ``args`` (other arguments of ``args`` ignored);
    pass it to the settings class as ``_cli_settings_source``."""
    fields = source.settings_cls.model_fields
    return source(parsed_args={name: value for name, value in vars(args).items() if name in fields})
